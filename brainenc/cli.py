"""The ``brainenc`` command line: a thin layer over the public API."""
from __future__ import annotations

import argparse
import re
import signal
import sys
import time
from pathlib import Path

from brainenc import __version__
from brainenc.errors import BrainencInputError, BrainencInputWarning


def _add_analysis_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-lag", type=int, default=None, metavar="TRS",
                        help="longest lag of the response autocorrelation the significance tests "
                        "account for (default: 20 s worth of TRs, 10 at TR 2 s)")
    parser.add_argument("--no-significance", action="store_true",
                        help="skip the significance tests and transfer maps (r and R2 only)")
    parser.add_argument("--fdr-q", type=float, default=0.05,
                        help="Benjamini-Hochberg false discovery rate (default: 0.05)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_cleaning_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "response cleaning (BIDS/fMRIPrep)", "confound regression, detrending and high-pass "
        "filtering of each run on loading, with nilearn (docs/data_layouts.md)")
    group.add_argument("--confounds", nargs="+", default=None, metavar="STRATEGY",
                       help="a nilearn denoising strategy (simple, compcor, ica_aroma) or confound "
                       "components (motion wm_csf global_signal compcor high_pass ...) read from "
                       "each run's *_desc-confounds_timeseries.tsv")
    group.add_argument("--detrend", action="store_true", help="remove a linear trend per run")
    group.add_argument("--high-pass", type=float, default=None, metavar="HZ",
                       help="Butterworth high-pass cut-off in Hz (e.g. 0.008)")


def _cleaning(args):
    """The response cleaning the options ask for, or None."""
    from brainenc.io.confounds import NAMED_STRATEGIES, ResponseCleaning

    strategy = args.confounds
    if strategy is not None and len(strategy) == 1 and strategy[0] in (*NAMED_STRATEGIES, "scrubbing"):
        strategy = strategy[0]
    cleaning = ResponseCleaning(strategy=strategy, detrend=args.detrend, high_pass=args.high_pass)
    return cleaning if cleaning.active else None


def _add_overwrite_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace a previous {what} at OUT (only a folder brainenc wrote, "
                        "and only if it holds no other files)")


def _add_roi_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--roi-labels", nargs="+", type=Path, default=None, metavar="FILE",
                        help="ROI labels for per-ROI tables: two surface label files (left, right; "
                        ".label.gii or .annot), a NIfTI atlas [and its lookup .tsv], or a "
                        "simulated subject's ground_truth.npz")


def _add_scheduler_options(parser: argparse.ArgumentParser, default: str, unit: str) -> None:
    """--scheduler and --workers: where the tasks (one per ``unit``) run."""
    parser.add_argument("--scheduler", default=default, metavar="local|serial|ADDRESS",
                        help=f"'local': one Dask task per {unit} on a LocalCluster of this machine; "
                        f"'serial': one {unit} after the other in this process; or a Dask scheduler "
                        "address (tcp://host:8786, e.g. from dask-jobqueue on SLURM/PBS) whose "
                        f"workers see the same paths (default: {default})")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="workers of the local cluster (--scheduler local; default: one per core)")


def _add_split_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", type=Path, required=True,
                        help="dataset folder (Huth, BIDS/fMRIPrep) or manifest .tsv")
    parser.add_argument("--subject", required=True, help="subject id as in the dataset")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--preset", choices=["huth", "default"], default=None,
                        help="design-matrix preset (default: the layout's)")
    parser.add_argument("--alphas", type=float, nargs="+", default=None,
                        help="ridge alpha grid (default: the preset's)")
    parser.add_argument("--backend", default="auto",
                        help="himalaya backend: auto (GPU when present), numpy, torch, torch_cuda")
    parser.add_argument("--no-report", action="store_true", help="skip figures and report.html")


def _add_memory_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--memory", default=None, metavar="SIZE",
                        help="bound the analysis's memory (e.g. 8GB, 16GiB): responses are read "
                        "from their files in voxel batches sized to stay under it (default: all "
                        "responses in memory, batches of 20 000 voxels)")


def _add_encode_parser(sub) -> None:
    enc = sub.add_parser("encode", help="within-modality encoding of one subject (story-only or "
                         "movie-only data)",
                         description="Fit voxelwise ridge models on one modality's runs and score "
                         "them on held-out runs of the same modality, with the tests, FDR maps and "
                         "report of `transfer` for that direction. Its numbers equal the "
                         "within-modality direction of `transfer` on the same runs.")
    _add_split_options(enc)
    enc.add_argument("--features", required=True, nargs="+",
                     help="feature space name(s) under DATASET/features, or folder path(s)")
    enc.add_argument("--modality", choices=["story", "movie"], default=None,
                     help="the runs to analyse (default: story, or movie for a subject without "
                     "story runs)")
    enc.add_argument("--test-runs", nargs="+", default=None, metavar="RUN",
                     help="runs held out for testing (default: the layout's test run, "
                     "wheretheressmoke in the Huth layout, else leave-one-run-out)")
    enc.add_argument("--leave-one-run-out", action="store_true",
                     help="split leave-one-run-out even where the layout has a default test run")
    enc.add_argument("--score", choices=["correlation", "r2"], default="correlation",
                     help="alpha-selection score (default: correlation)")
    _add_roi_option(enc)
    _add_cleaning_options(enc)
    _add_overwrite_option(enc, "encoding result")
    _add_analysis_options(enc)
    _add_memory_option(enc)


def _add_task_parser(sub) -> None:
    task = sub.add_parser("task", help="train, evaluate or isolate a model of the fusion core on a "
                          "task (gestures, sentiment) described by a TOML spec",
                          description="Tasks on the fusion core. SPEC is a TOML file naming the "
                          "task, its data, model, training settings and seeds (docs/tasks.md).")
    actions = task.add_subparsers(dest="task_action", required=True, metavar="ACTION")
    train = actions.add_parser("train", help="train every seed (resuming interrupted ones), test "
                               "the best epoch of each, summarise mean ± sd",
                               description="Train the spec's model for each seed into OUT/seed-<k>/ "
                               "(checkpoints, metrics.jsonl), test the best epoch, and write "
                               "OUT/summary.json with the mean and sd over seeds.")
    train.add_argument("spec", type=Path, help="task specification (.toml)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run of another spec in OUT (only a folder brainenc wrote)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate = actions.add_parser("eval", help="test metrics of the trained seeds",
                                  description="Evaluate the best model of every seed on the test "
                                  "data; --noise replaces one modality by matched noise (RollingQ's "
                                  "noise test).")
    evaluate.add_argument("spec", type=Path, help="task specification (.toml)")
    evaluate.add_argument("--noise", default=None, metavar="MODALITY",
                          help="replace this modality by noise of its mean and sd at test time")
    isolate = actions.add_parser("isolate", help="pathway report per layer and interaction share "
                                 "of the modalities",
                                 description="For the best model of every seed: the isolation "
                                 "report of each layer and the interaction share of the two "
                                 "modalities on the test data (docs/isolation.md); writes "
                                 "OUT/isolation.json.")
    isolate.add_argument("spec", type=Path, help="task specification (.toml)")


def _task(args) -> None:
    from brainenc.tasks.runner import evaluate_task, isolate_task, train_task
    from brainenc.tasks.spec import load_spec

    spec = load_spec(args.spec)
    if args.task_action == "train":
        summary = train_task(spec, overwrite=args.overwrite, progress=not args.quiet)
        print(summary.format())
        print(f"\nresults in {spec.out}")
    elif args.task_action == "eval":
        summary = evaluate_task(spec, noise=args.noise)
        print(summary.format())
    else:
        report = isolate_task(spec)
        for seed, entry in report.items():
            shares = ", ".join(f"{m} {v:.3f}" for m, v in entry["main_share"].items())
            print(f"seed {seed}: interaction share {entry['interaction_share']:.3f} "
                  f"(main shares: {shares})")
        print(f"\nreport in {spec.out / 'isolation.json'}")


def _add_sweep_parser(sub) -> None:
    sweep = sub.add_parser("sweep", help="the transfer analysis over subjects × feature spaces, "
                           "on this machine or a Dask cluster, resumable",
                           description="Run `brainenc transfer` (or `encode`) for every subject and "
                           "feature space of a TOML sweep spec into OUT/<subject>/<feature space>/, "
                           "then write OUT/sweep_summary.csv and OUT/sweep_report.html. Finished "
                           "folders are kept: running the same spec again resumes (docs/sweeps.md).")
    sweep.add_argument("spec", type=Path, help="sweep specification (.toml)")
    _add_scheduler_options(sweep, "local", "job")
    sweep.add_argument("--memory", default=None, metavar="SIZE",
                       help="bound each job's memory (e.g. 8GB; replaces [analysis] memory): "
                       "responses are read in voxel batches sized to stay under it; a local "
                       "cluster needs --workers times this much")
    sweep.add_argument("--overwrite", action="store_true",
                       help="replace the results of a sweep of another analysis in OUT")


def _sweep(args) -> int:
    from brainenc.sweep import load_sweep_spec, plan_sweep, run_sweep, write_sweep_summary
    from brainenc.sweep.run import SweepFailed, check_scheduler, describe_units

    check_scheduler(args.scheduler, args.workers)
    spec = load_sweep_spec(args.spec).with_memory(args.memory)
    plan = plan_sweep(spec, overwrite=args.overwrite,
                      devices_here=args.scheduler in ("serial", "local"))
    pending = plan.pending()
    print(f"{len(plan.jobs)} jobs ({len(plan.subjects)} subjects × {len(plan.feature_spaces)} "
          f"feature spaces), {len(plan.jobs) - len(pending)} already done")
    for line in describe_units(plan, pending):
        print(f"  {line}")
    failed = None
    try:
        run_sweep(plan, scheduler=args.scheduler, n_workers=args.workers,
                  on_done=lambda key: print(f"  done {key}", flush=True))
    except SweepFailed as error:
        failed = error
    write_sweep_summary(plan)
    print(f"\nsweep table in {spec.out / 'sweep_summary.csv'}, report in "
          f"{spec.out / 'sweep_report.html'}")
    if failed is not None:
        print(f"brainenc sweep: error: {failed}", file=sys.stderr)
        return 1
    return 0


def _add_layers_parser(sub) -> None:
    layers = sub.add_parser("layers", help="the transfer analysis over every layer of a model",
                            description="Run the transfer analysis on every feature space whose "
                            "name matches PATTERN and ends with a layer number, sharing the "
                            "responses, splits and noise estimates; write per-layer curves, "
                            "best-layer maps and a report.")
    _add_split_options(layers)
    layers.add_argument("--features", required=True, metavar="PATTERN",
                        help="shell pattern of the layers' feature-space names under "
                        "DATASET/features, e.g. 'bridgetower-base_cross*'")
    layers.add_argument("--test-story", nargs="+", default=None, metavar="RUN",
                        help="story runs held out for testing (default: leave-one-run-out)")
    layers.add_argument("--test-movie", nargs="+", default=None, metavar="RUN",
                        help="movie runs held out for testing (default: leave-one-run-out)")
    layers.add_argument("--save-weights", action="store_true",
                        help="write every layer's weights.h5 (features x delays x voxels each)")
    _add_roi_option(layers)
    _add_cleaning_options(layers)
    _add_overwrite_option(layers, "layer sweep")
    _add_analysis_options(layers)
    _add_memory_option(layers)


def _add_partition_parser(sub) -> None:
    part = sub.add_parser("partition", help="unique and shared variance of two feature spaces",
                          description="Fit a joint banded-ridge model of two feature spaces (one "
                          "penalty each) and each space alone on one modality; map the variance "
                          "each explains uniquely and the variance they share.")
    _add_split_options(part)
    part.add_argument("--features", required=True, nargs=2, metavar=("A", "B"),
                      help="the two feature spaces (names under DATASET/features, or folders)")
    part.add_argument("--modality", choices=["story", "movie"], default="story",
                      help="whose runs train and test the models (default: story)")
    part.add_argument("--test-runs", nargs="+", default=None, metavar="RUN",
                      help="runs held out for testing (default: leave-one-run-out)")
    part.add_argument("--n-iter", type=int, default=None,
                      help="random-search iterations of the banded penalties (default: 20)")
    part.add_argument("--seed", type=int, default=0, help="seed of the random search (default: 0)")
    part.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_overwrite_option(part, "variance partition")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainenc",
        description="Cross-modal voxelwise encoding: fit on stories, predict movies, and back.",
    )
    parser.add_argument("--version", action="version", version=f"brainenc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = sub.add_parser("simulate", help="write a simulated subject with ground truth",
                         description="Write a complete simulated dataset (responses on fsaverage5, "
                         "transcripts, frame tables, two feature spaces, ground truth).")
    sim.add_argument("out", type=Path, help="output folder")
    sim.add_argument("--layout", choices=["huth", "bids"], default="huth",
                     help="dataset layout to write (default: huth)")
    sim.add_argument("--subject", default="sim01", help="subject id (default: sim01)")
    sim.add_argument("--n-stories", type=int, default=5, help="story runs (default: 5)")
    sim.add_argument("--n-movies", type=int, default=5, help="movie runs (default: 5)")
    sim.add_argument("--snr", type=float, nargs="+", default=None, metavar="SNR",
                     help="region SNR, or LOW HIGH for a log-uniform range (default: 0.02 0.8)")
    sim.add_argument("--n-trs-per-run", type=int, nargs="+", default=None, metavar="TRS",
                     help="analysed volumes per run, or LOW HIGH for a range (default: 300 400)")
    sim.add_argument("--noise-rho", type=float, default=None,
                     help="lag-one autocorrelation of the AR(1) noise (default: 0.4)")
    sim.add_argument("--noise-smoothing", type=int, default=None,
                     help="steps of neighbour averaging of the noise on the mesh (default: 2)")
    sim.add_argument("--regions-per-hemi", type=int, default=None,
                     help="regions of each category per hemisphere (default: 2)")
    sim.add_argument("--overlap-distance", type=float, default=None,
                     help="centre distance of paired regions, in mean radii (default: 1.0)")
    sim.add_argument("--edge-amplitude", type=float, default=None,
                     help="signal amplitude at a region's edge, relative to its centre (default: 0.3)")
    sim.add_argument("--story-repeats", type=int, default=None,
                     help="presentations of the last story (default: 1; more needs --layout bids)")
    sim.add_argument("--movie-repeats", type=int, default=None,
                     help="presentations of the last movie (default: 1; more needs --layout bids)")
    sim.add_argument("--pure-noise", action="store_true",
                     help="no signal anywhere: a subject for calibration checks")
    sim.add_argument("--save-signal", action="store_true",
                     help="also write signal.npz, the noiseless signal of every run")
    sim.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    sim.add_argument("--movie-format", choices=["frames", "video"], default="frames",
                     help="movies as frame-time tables (default) or as small mp4 videos")
    _add_overwrite_option(sim, "simulated dataset")

    tr = sub.add_parser("transfer", help="within- and cross-modal encoding of one subject",
                        description="Fit voxelwise ridge models on stories and on movies, score "
                        "all four directions, test significance and write maps and a report.")
    tr.add_argument("--dataset", type=Path, required=True,
                    help="dataset folder (Huth, BIDS/fMRIPrep) or manifest .tsv")
    tr.add_argument("--subject", required=True, help="subject id as in the dataset")
    tr.add_argument("--features", required=True, nargs="+",
                    help="feature space name(s) under DATASET/features, or folder path(s)")
    tr.add_argument("--out", type=Path, required=True, help="output folder")
    tr.add_argument("--preset", choices=["huth", "default"], default=None,
                    help="design-matrix preset (default: the layout's)")
    tr.add_argument("--alphas", type=float, nargs="+", default=None,
                    help="ridge alpha grid (default: the preset's)")
    tr.add_argument("--test-story", nargs="+", default=None, metavar="RUN",
                    help="story runs held out for testing (default: leave-one-run-out)")
    tr.add_argument("--test-movie", nargs="+", default=None, metavar="RUN",
                    help="movie runs held out for testing (default: leave-one-run-out)")
    tr.add_argument("--score", choices=["correlation", "r2"], default="correlation",
                    help="alpha-selection score (default: correlation)")
    tr.add_argument("--backend", default="auto",
                    help="himalaya backend: auto (GPU when present), numpy, torch, torch_cuda")
    tr.add_argument("--no-report", action="store_true", help="skip figures and report.html")
    tr.add_argument("--compare", nargs="+", default=None, metavar="A:B",
                    help="compare feature spaces A and B (both in --features): per-voxel paired "
                    "difference of r in every direction, tested and mapped")
    tr.add_argument("--dimensions", action="store_true",
                    help="shared semantic dimensions: PCA of each space's story and movie weights, "
                    "principal angles against a null, top stimuli, loading maps")
    tr.add_argument("--n-permutations", type=int, default=None,
                    help="with --dimensions: shuffles of the null of the principal angles "
                    "(default: 200, at least 19)")
    _add_roi_option(tr)
    _add_cleaning_options(tr)
    _add_overwrite_option(tr, "transfer result")
    _add_analysis_options(tr)
    _add_memory_option(tr)

    tr.add_argument("--leave-one-run-out", action="store_true",
                    help="split every modality without named test runs leave-one-run-out, even "
                    "where the layout has a default test run (the Huth layout's wheretheressmoke)")

    _add_encode_parser(sub)
    _add_layers_parser(sub)
    _add_partition_parser(sub)
    _add_task_parser(sub)
    _add_sweep_parser(sub)

    ex = sub.add_parser("extract", help="features of a dataset's stimuli from a model, every layer",
                        description="Run story words (with context) and movie frames through a "
                        "Hugging Face model (hub id or local folder) or a word-embedding file and "
                        "write one feature space per layer, cached by content.")
    ex.add_argument("--dataset", type=Path, required=True,
                    help="dataset folder (Huth, BIDS/fMRIPrep) or manifest .tsv")
    ex.add_argument("--model", required=True,
                    help="hub id or local folder of a model, or a word-embedding file (.txt/.h5)")
    ex.add_argument("--modality", choices=["story", "movie", "both"], default="both",
                    help="stimuli to embed (default: both that the model can embed)")
    ex.add_argument("--layers", default="all",
                    help="'all', indices ('8', '-1'), names ('text.3') or prefixes ('cross.*'), "
                    "comma-separated (default: all)")
    ex.add_argument("--out", type=Path, default=None,
                    help="feature root (default: DATASET/features)")
    ex.add_argument("--name", default="{model}_{label}",
                    help="feature-space name template from {model}, {label}, {layer} "
                    "(default: {model}_{label}, e.g. bridgetower-base_cross3)")
    ex.add_argument("--revision", default=None,
                    help="hub model revision (branch, tag or commit); recorded with the features")
    ex.add_argument("--subject", default=None, help="only this subject's stimuli")
    ex.add_argument("--tier", default=None,
                    help="TextGrid word tier, by name or 0-based index (default: the one tier "
                    "named 'word' or 'words')")
    ex.add_argument("--min-transcript-coverage", type=float, default=None, metavar="FRACTION",
                    help="fail when a transcript's last word ends before this fraction of its "
                    "run's scan (default: 0.8, with 30 s of slack; 0 turns the check off)")
    ex.add_argument("--lock-timeout", type=float, default=None, metavar="SECONDS",
                    help="give up after waiting this long for another extraction into the same "
                    "folder (default: wait)")
    ex.add_argument("--context-words", type=int, default=None,
                    help="preceding words in each word's context (default: 20)")
    ex.add_argument("--token-pooling", choices=["last", "mean"], default=None,
                    help="a word's vector from its last token or the mean of its tokens")
    ex.add_argument("--frame-pooling", choices=["cls", "mean"], default=None,
                    help="a frame's vector from the CLS token or the mean of patch tokens")
    ex.add_argument("--input-mode", choices=["towers", "neutral"], default=None,
                    help="BridgeTower: towers alone, or the full model with a neutral input "
                    "for the missing modality (adds the cross-modal layers)")
    ex.add_argument("--fps", type=float, default=None,
                    help="sample videos at this frame rate (default: every frame)")
    ex.add_argument("--device", default=None, help="auto (GPU when present), cpu, cuda...")
    ex.add_argument("--dtype", default=None, help="float32 (default), float16, bfloat16")
    ex.add_argument("--batch-size", type=int, default=None, help="inputs per forward pass")
    ex.add_argument("--force", action="store_true", help="recompute cached features")
    ex.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_scheduler_options(ex, "serial", "stimulus")

    demo = sub.add_parser("demo", help="simulate a subject and run the whole analysis",
                          description="Simulate a subject, run the transfer analysis with a "
                          "multimodal and a unimodal feature space, and write the report.")
    demo.add_argument("--out", type=Path, default=Path("demo_output"),
                      help="output folder (default: demo_output)")
    demo.add_argument("--layout", choices=["huth", "bids"], default="huth",
                      help="layout of the simulated dataset (default: huth)")
    demo.add_argument("--seed", type=int, default=0,
                      help="seed of the simulated subject (default: 0)")
    _add_overwrite_option(demo, "demo output")
    _add_analysis_options(demo)
    return parser


#: Parameters of simulate_dataset that are options of ``brainenc simulate``.
_SIMULATE_OPTIONS = ("n_stories", "n_movies", "snr", "n_trs_per_run", "noise_rho", "noise_smoothing",
                     "regions_per_hemi", "overlap_distance", "edge_amplitude", "story_repeats",
                     "movie_repeats", "movie_format", "layout", "subject")


def _option_names(problem: str) -> str:
    """A simulation error message with parameter names replaced by their command-line options."""
    for name in _SIMULATE_OPTIONS:
        problem = re.sub(rf"(?<![\w<-]){name}(?=\s(?:must\b|>|<|and\b)|=)", "--" + name.replace("_", "-"),
                         problem)
    return problem


def _value_or_range(values: list | None, option: str):
    """One value, or a (low, high) pair, from an option taking one or two numbers."""
    if values is None or len(values) == 1:
        return None if values is None else values[0]
    if len(values) == 2:
        return tuple(values)
    raise BrainencInputError(None, f"{option} takes one value or two (LOW HIGH), got {len(values)}")


def _simulation_options(args) -> dict:
    """The simulation parameters given on the command line (the others keep their defaults)."""
    options = {
        "snr": _value_or_range(args.snr, "--snr"),
        "n_trs_per_run": _value_or_range(args.n_trs_per_run, "--n-trs-per-run"),
        "noise_rho": args.noise_rho, "noise_smoothing": args.noise_smoothing,
        "regions_per_hemi": args.regions_per_hemi, "overlap_distance": args.overlap_distance,
        "edge_amplitude": args.edge_amplitude, "story_repeats": args.story_repeats,
        "movie_repeats": args.movie_repeats,
    }
    return {key: value for key, value in options.items() if value is not None}


def _test_runs(args) -> dict | None:
    test = {}
    if getattr(args, "leave_one_run_out", False):
        test = {"story": None, "movie": None}
    if args.test_story:
        test["story"] = args.test_story
    if args.test_movie:
        test["movie"] = args.test_movie
    if getattr(args, "leave_one_run_out", False) and args.test_story and args.test_movie:
        raise BrainencInputError(None, "--leave-one-run-out applies to a modality without named "
                                       "test runs; both --test-story and --test-movie are given")
    return test or None


def _encode(args) -> None:
    from brainenc.analysis_outputs import AnalysisRequest
    from brainenc.io.layouts import load_dataset
    from brainenc.workflows import transfer_to_folder

    modality = args.modality
    if modality is None:
        data = load_dataset(args.dataset)
        has_story = bool(data.runs_for(args.subject, "story"))
        modality = "story" if has_story or not data.runs_for(args.subject, "movie") else "movie"
    if args.leave_one_run_out and args.test_runs:
        raise BrainencInputError(None, "--leave-one-run-out and --test-runs are alternatives")
    test_runs = ({modality: args.test_runs} if args.test_runs else
                 {modality: None} if args.leave_one_run_out else None)
    results = transfer_to_folder(
        args.dataset, args.subject, args.features, args.out, report=not args.no_report,
        overwrite=args.overwrite, analyses=AnalysisRequest(roi_labels=tuple(args.roi_labels or ())),
        cleaning=_cleaning(args),
        preset=args.preset, alphas=args.alphas, test_runs=test_runs, score_func=args.score,
        significance=not args.no_significance, max_lag=args.max_lag, fdr_q=args.fdr_q,
        backend=args.backend, progress=not args.quiet, modalities=(modality,), memory=args.memory)
    _print_summaries(results)
    print(f"\nresults in {args.out}")


def _print_summaries(results) -> None:
    for res in results:
        print(f"\n{res.subject} / {res.feature_space_label} ({res.n_voxels} voxels)")
        transfer_header = f"{'transfer':>10}" if res.cross_modal else ""
        print(f"  {'direction':<16}{'signif.':>9}{'mean r':>9}{'mean r sig.':>13}{transfer_header}")
        transfer_maps = {t.direction: t for t in res.transfer_summaries}
        for s in res.summaries:
            transfer = (f"{transfer_maps[s.direction].fraction_significant:>10.3f}"
                        if s.direction in transfer_maps else "")
            fraction = "–" if s.n_significant is None else f"{s.fraction_significant:.3f}"
            print(f"  {s.direction:<16}{fraction:>9}{s.mean_r:>9.3f}"
                  f"{s.mean_r_significant:>13.3f}{transfer}")
        if not res.tested:
            print("  (significance not tested: --no-significance)")


def _check_extract_options(args) -> None:
    problems = []
    if args.fps is not None and not args.fps > 0:
        problems.append(f"--fps must be positive, got {args.fps}")
    if args.batch_size is not None and args.batch_size < 1:
        problems.append(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.context_words is not None and args.context_words < 0:
        problems.append(f"--context-words must be >= 0, got {args.context_words}")
    if args.min_transcript_coverage is not None and not 0 <= args.min_transcript_coverage <= 1:
        problems.append(f"--min-transcript-coverage must be in [0, 1], "
                        f"got {args.min_transcript_coverage}")
    if args.lock_timeout is not None and args.lock_timeout < 0:
        problems.append(f"--lock-timeout must be >= 0 seconds, got {args.lock_timeout}")
    if problems:
        raise BrainencInputError(None, "; ".join(problems))
    from feature_extractors.sharded import check_sharding

    check_sharding(args.scheduler, args.workers)


def _extract(args) -> None:
    from brainenc.checks import input_paths
    from brainenc.io.layouts import load_dataset
    from brainenc.io.output import check_feature_root
    from feature_extractors.loading import load_extractor
    from feature_extractors.pipeline import extract_dataset

    _check_extract_options(args)
    options = {
        key: value for key, value in {
            "context_words": args.context_words, "token_pooling": args.token_pooling,
            "frame_pooling": args.frame_pooling, "input_mode": args.input_mode,
            "device": args.device, "dtype": args.dtype, "batch_size": args.batch_size,
            "revision": args.revision,
        }.items() if value is not None
    }
    tier = int(args.tier) if args.tier is not None and args.tier.lstrip("-").isdigit() else args.tier
    checks = {} if args.min_transcript_coverage is None else {
        "min_transcript_coverage": args.min_transcript_coverage}
    data = load_dataset(args.dataset)
    if args.subject is not None:
        data.runs_for(args.subject)
    out = check_feature_root(args.out if args.out is not None else data.feature_root,
                             dataset_root=data.root, default_root=data.feature_root,
                             inputs=input_paths(data, args.subject))
    if args.quiet:
        try:  # transformers is needed only for Hugging Face models
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
        except ImportError:
            pass
    settings = dict(modality=args.modality, layers=args.layers, out=out, name_template=args.name,
                    fps=args.fps, tier=tier, subject=args.subject, force=args.force,
                    progress=not args.quiet, lock_timeout_s=args.lock_timeout, **checks)
    if args.scheduler == "serial":
        report = extract_dataset(data, load_extractor(args.model, **options), **settings)
    else:
        from feature_extractors.sharded import extract_sharded

        report = extract_sharded(data, args.model, options=options, scheduler=args.scheduler,
                                 n_workers=args.workers, **settings)
    for folder in report.removed_staging:
        print(f"removed {folder}, left by an interrupted extraction")
    print(f"{len(report.written)} feature files written, {len(report.cached)} already cached")
    print(f"feature spaces in {out}: {', '.join(report.spaces)}")


def _layers(args) -> None:
    from brainenc.workflows import layers_to_folder

    _, sweep = layers_to_folder(
        args.dataset, args.subject, args.features, args.out, report=not args.no_report,
        overwrite=args.overwrite, save_weights=args.save_weights, roi_labels=args.roi_labels or (),
        cleaning=_cleaning(args),
        preset=args.preset, alphas=args.alphas, test_runs=_test_runs(args),
        significance=not args.no_significance, max_lag=args.max_lag, fdr_q=args.fdr_q,
        backend=args.backend, progress=not args.quiet, memory=args.memory)
    print(f"\n{'layer':<28}" + "".join(f"{d:>17}" for d in sweep.mean_r))
    for k, layer in enumerate(sweep.layers):
        print(f"{layer:<28}" + "".join(f"{sweep.mean_r[d][k]:>10.3f} ({int(sweep.n_map[d][k]):>4})"
                                       for d in sweep.mean_r))
    print("(mean r over all voxels, and the number of voxels in each map)")
    print(f"\nresults in {args.out}")


def _partition(args) -> None:
    from brainenc.workflows import partition_to_folder

    if args.n_iter is not None and args.n_iter < 1:
        raise BrainencInputError(None, f"--n-iter must be at least 1, got {args.n_iter}")
    options = {} if args.n_iter is None else {"n_iter": args.n_iter}
    result = partition_to_folder(
        args.dataset, args.subject, args.features, args.out, modality=args.modality,
        report=not args.no_report, overwrite=args.overwrite, preset=args.preset,
        alphas=args.alphas, test_runs=args.test_runs, backend=args.backend, random_state=args.seed,
        progress=not args.quiet, **options)
    import numpy as np

    maps = result.maps()
    for name, values in (("joint R2", result.r2_joint), (f"unique {result.spaces[0]}", maps["unique_a"]),
                         (f"unique {result.spaces[1]}", maps["unique_b"]), ("shared", maps["shared"])):
        print(f"  {name:<40} mean {np.nanmean(values):.4f}")
    print(f"\nresults in {args.out}")


def _run(args) -> int | None:
    """Run the command; an exit status other than 0 where a command returns one."""
    if args.command == "simulate":
        from brainenc.simulate import simulate_dataset

        try:
            info = simulate_dataset(args.out, layout=args.layout, subject=args.subject,
                                    n_stories=args.n_stories, n_movies=args.n_movies,
                                    seed=args.seed, movie_format=args.movie_format,
                                    overwrite=args.overwrite, pure_noise=args.pure_noise,
                                    save_signal=args.save_signal, **_simulation_options(args))
        except BrainencInputError as error:
            raise BrainencInputError(error.path, _option_names(error.problem)) from None
        print(f"simulated subject {info.subject} ({args.layout} layout) in {info.root}")
    elif args.command == "transfer":
        from brainenc.analysis_outputs import AnalysisRequest, parse_pairs
        from brainenc.workflows import transfer_to_folder

        request = AnalysisRequest(compare=parse_pairs(args.compare), dimensions=args.dimensions,
                                  n_permutations=args.n_permutations,
                                  roi_labels=tuple(args.roi_labels or ()))
        results = transfer_to_folder(
            args.dataset, args.subject, args.features, args.out, report=not args.no_report,
            overwrite=args.overwrite, analyses=request, cleaning=_cleaning(args),
            preset=args.preset, alphas=args.alphas,
            test_runs=_test_runs(args), score_func=args.score, significance=not args.no_significance,
            max_lag=args.max_lag, fdr_q=args.fdr_q, backend=args.backend, progress=not args.quiet,
            memory=args.memory)
        _print_summaries(results)
        print(f"\nresults in {args.out}")
    elif args.command == "encode":
        _encode(args)
    elif args.command == "task":
        _task(args)
    elif args.command == "sweep":
        return _sweep(args)
    elif args.command == "layers":
        _layers(args)
    elif args.command == "partition":
        _partition(args)
    elif args.command == "extract":
        _extract(args)
    elif args.command == "demo":
        from brainenc.workflows import run_demo

        results = run_demo(args.out, layout=args.layout, significance=not args.no_significance,
                           max_lag=args.max_lag, fdr_q=args.fdr_q, seed=args.seed,
                           overwrite=args.overwrite, progress=not args.quiet)
        _print_summaries(results)
        print(f"\nreport: {args.out / 'results' / 'report.html'}")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """brainenc's own warnings as loud lines; others in Python's usual form."""
    import warnings

    own = str(Path(filename).resolve()).startswith(str(Path(__file__).resolve().parent))
    if issubclass(category, BrainencInputWarning) or (own and issubclass(category, UserWarning)):
        print(f"WARNING: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _interrupt(signum, frame) -> None:
    # further signals would interrupt the clean-up itself: ignore them from now on
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _message(error: BaseException) -> str:
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return str(error)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (0 done, 1 some jobs of a sweep failed,
    2 user error, 130 interrupted)."""
    import warnings

    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        # a batch scheduler ends jobs with SIGTERM: clean up as for Ctrl-C
        for signum, handler in previous.items():
            if handler is not signal.SIG_IGN:  # a shell's background job ignores SIGINT
                signal.signal(signum, _interrupt)
        with warnings.catch_warnings():
            warnings.simplefilter("always", BrainencInputWarning)
            warnings.showwarning = _show_warning
            status = _run(args)
    except KeyboardInterrupt:
        if args.command == "sweep":
            print("brainenc sweep: interrupted; the finished jobs' folders are kept, and the "
                  "same command resumes with the others", file=sys.stderr)
        else:
            print(f"brainenc {args.command}: interrupted; nothing was written to the output",
                  file=sys.stderr)
        return 130
    except (BrainencInputError, FileNotFoundError, KeyError, ValueError, OSError) as error:
        print(f"brainenc {args.command}: error: {_message(error)}", file=sys.stderr)
        return 2
    finally:
        # after a signal the process is ending: late repeats of it stay ignored
        signalled = any(signal.getsignal(signum) is signal.SIG_IGN and handler is not signal.SIG_IGN
                        for signum, handler in previous.items())
        if not signalled:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
