"""Sphinx configuration: the markdown guides of docs/ and an API reference from the docstrings.

Build (warnings are errors, as in tests/test_docs.py)::

    sphinx-build -W --keep-going -b html docs /tmp/brainenc-docs
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from brainenc import __version__  # noqa: E402

project = "brainenc"
author = "brainenc developers"
release = version = __version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# The guides link to each other's sections (``guide.md#section``): give headings anchors.
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# Autosummary tables only; the reference pages are written by hand (docs/api/*.rst), so
# building never writes stub files into the source tree.
autosummary_generate = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}

# numpydoc: no member tables (autodoc lists the members), no cross-reference of types.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "alabaster"
html_title = f"brainenc {release}"


def _skip_member(app, what, name, obj, skip, options):
    # scikit-learn adds set_<method>_request to every estimator (metadata routing); their
    # docstrings refer to sklearn's own glossary, and they are not brainenc's API
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    import numpydoc.numpydoc
    from sphinx.util.inspect import isgenericalias

    # numpydoc reads a documented type alias (``Folds = list[tuple[...]]``) as the builtin it
    # would call and fails on the builtin's docstring; an alias has no signature to mangle.
    def mangle_signature(app, what, name, obj, options, sig, retann):
        if isgenericalias(obj):
            return None
        return numpydoc.numpydoc.mangle_signature(app, what, name, obj, options, sig, retann)

    for listener in list(app.events.listeners["autodoc-process-signature"]):
        if listener.handler is numpydoc.numpydoc.mangle_signature:
            app.disconnect(listener.id)
            app.connect("autodoc-process-signature", mangle_signature, priority=listener.priority)
    app.connect("autodoc-skip-member", _skip_member)
