"""The sweep's table and report: one row per (subject, feature space, map) across the sweep.

``OUT/sweep_summary.csv`` (and ``.parquet`` when pyarrow is installed) holds,
for every finished job, each direction's map (``map = "prediction"``) and each
cross-modal direction's transfer map (``map = "transfer"``): the columns of
:class:`brainenc.results.DirectionSummary`. ``OUT/sweep_report.html`` shows the
mean r of every direction against the feature spaces, one colour per subject
(lines join the layers of one model), and links each job's own report. The
``aligned_pair`` column says whether a feature space's story and movie features
share a space (False for an unaligned baseline, empty where the files do not
say).
"""
from __future__ import annotations

import csv
import html
import json
from pathlib import Path

from brainenc.io.atomic import atomic_path
from brainenc.sweep.plan import SweepPlan, job_done

__all__ = ["sweep_rows", "write_sweep_summary", "COLUMNS"]

COLUMNS = ("subject", "feature_space", "map", "direction", "n_voxels", "n_significant",
           "fraction_significant", "mean_r", "mean_r_significant", "max_r", "aligned_pair")
#: The columns read from each direction's summary.
SUMMARY_COLUMNS = COLUMNS[4:-1]


def sweep_rows(plan: SweepPlan) -> list[dict]:
    """Rows of every finished job, in the plan's order."""
    rows = []
    for job in plan.jobs:
        if not job_done(job):
            continue
        content = json.loads((job.folder / "summary.json").read_text(encoding="utf-8"))
        for result in content["results"]:
            for kind, key in (("prediction", "directions"), ("transfer", "transfer")):
                for direction, values in result.get(key, {}).items():
                    row = {"subject": job.subject, "feature_space": job.feature_space,
                           "map": kind, "direction": direction}
                    row.update({c: values.get(c) for c in SUMMARY_COLUMNS})
                    # whether story and movie features share a space (a baseline's do not)
                    row["aligned_pair"] = result.get("settings", {}).get("aligned_pair")
                    rows.append(row)
    return rows


def _write_csv(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)


def _write_parquet(rows: list[dict], path: Path) -> bool:
    try:
        import pandas as pd
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=list(COLUMNS)).to_parquet(tmp, index=False)
    return True


def _layer_runs(spaces: list[str]) -> list[list[int]]:
    """Positions of consecutive feature spaces that are layers of one model
    (``<model>_<number>``), runs of two or more."""
    import re

    runs, previous = [], None
    for i, name in enumerate(spaces):
        match = re.fullmatch(r"(.+)_(\d+)", name)
        model = match[1] if match else None
        if model is not None and model == previous:
            runs[-1].append(i)
        else:
            runs.append([i])
        previous = model
    return [run for run in runs if len(run) > 1]


def _figure(plan: SweepPlan, rows: list[dict], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    prediction = [r for r in rows if r["map"] == "prediction"]
    directions = list(dict.fromkeys(r["direction"] for r in prediction))
    if not directions:
        return False
    spaces = plan.feature_spaces
    fig, axes = plt.subplots(1, len(directions), figsize=(3.2 * len(directions) + 1, 3.4),
                             squeeze=False, sharey=True)
    runs = _layer_runs(spaces)
    for ax, direction in zip(axes[0], directions):
        for k, subject in enumerate(plan.subjects):
            values = {r["feature_space"]: r["mean_r"] for r in prediction
                      if r["subject"] == subject and r["direction"] == direction}
            y = [values.get(s, float("nan")) for s in spaces]
            colour = f"C{k % 10}"
            ax.plot(range(len(spaces)), y, marker="o", linestyle="none", color=colour, label=subject)
            for run in runs:   # lines join the layers of one model only
                ax.plot(run, [y[i] for i in run], color=colour, lw=1)
        ax.set_title(direction.replace("_", " "))
        ax.set_xticks(range(len(spaces)), spaces, rotation=60, ha="right", fontsize=7)
        ax.axhline(0, color="0.6", lw=0.8)
    axes[0][0].set_ylabel("mean r over voxels")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    fig.set_layout_engine("constrained")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return True


def _link(job) -> str:
    """The job's report (or its summary, without a report), or a note that it is not finished."""
    if not job_done(job):
        return f"{html.escape(job.key)} (not finished)"
    target = "report.html" if (job.folder / "report.html").is_file() else "summary.json"
    return f'<a href="{html.escape(job.key)}/{target}">{html.escape(job.key)}</a>'


def _report(plan: SweepPlan, rows: list[dict], has_figure: bool, path: Path) -> None:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return html.escape("" if value is None else str(value))

    header = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{cell(r[c])}</td>" for c in COLUMNS) + "</tr>" for r in rows)
    links = "".join(f"<li>{_link(job)}</li>" for job in plan.jobs)
    figure = '<img src="sweep_mean_r.png" alt="mean r per feature space">' if has_figure else ""
    text = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>brainenc sweep</title>"
            f"<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;"
            f"border-bottom:1px solid #ddd;font-size:13px}}img{{max-width:100%;height:auto}}</style>"
            f"</head><body>"
            f"<h1>Sweep: {len(plan.subjects)} subjects × {len(plan.feature_spaces)} feature spaces</h1>"
            f"<p>Dataset {html.escape(str(plan.spec.dataset))}; spec {html.escape(str(plan.spec.path))}."
            f"</p>{figure}<h2>Results</h2><ul>{links}</ul><h2>Table</h2>"
            f"<table><tr>{header}</tr>{body}</table></body></html>")
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def write_sweep_summary(plan: SweepPlan) -> list[dict]:
    """Write the sweep's table, figure and report into its root; the rows."""
    root = plan.spec.out
    rows = sweep_rows(plan)
    _write_csv(rows, root / "sweep_summary.csv")
    _write_parquet(rows, root / "sweep_summary.parquet")
    has_figure = _figure(plan, rows, root / "sweep_mean_r.png")
    _report(plan, rows, has_figure, root / "sweep_report.html")
    return rows
