"""Figures and the HTML report of transfer analyses.

* :mod:`brainenc.plotting.surface`: fsaverage5 cortical maps (one value, a
  pair or three values per vertex) and volume-to-surface projection;
* :mod:`brainenc.plotting.figures`: score distributions and direction comparisons;
* :mod:`brainenc.plotting.analyses`: report sections of the analyses of
  :mod:`brainenc.analyses` (comparisons, shared dimensions, layer sweeps, noise
  ceilings, variance partitions, ROIs);
* :mod:`brainenc.plotting.report`: the HTML report with all of them.
"""
from brainenc.plotting.figures import (
    plot_feature_space_comparison,
    plot_ground_truth_summary,
    plot_histograms,
    plot_transfer_scatter,
    plot_within_vs_cross,
    save_figure,
)
from brainenc.plotting.report import ReportSection, write_report
from brainenc.plotting.surface import (
    plot_fsaverage5,
    plot_fsaverage5_2d,
    plot_fsaverage5_rgb,
    surface_values,
    volume_to_fsaverage5,
)

__all__ = [
    "ReportSection",
    "plot_feature_space_comparison",
    "plot_fsaverage5",
    "plot_fsaverage5_2d",
    "plot_fsaverage5_rgb",
    "plot_ground_truth_summary",
    "plot_histograms",
    "plot_transfer_scatter",
    "plot_within_vs_cross",
    "save_figure",
    "surface_values",
    "volume_to_fsaverage5",
    "write_report",
]
