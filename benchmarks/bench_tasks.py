"""Training steps per second of MulT and GsiT on MMSA-shaped batches, dense and block attention.

A training step is what :func:`brainenc.tasks.training.train` does per batch
of the sentiment task: forward of MulT or GsiT, the L1 loss, backward and an
AdamW step. Batches come from a synthetic MOSI file in MMSA's unaligned
format (text 768 × 50, audio 5 × up to 500, vision 20 × up to 375 tokens;
lengths drawn per sample), so the cost includes MMSA's real sequence lengths.
Both models take MMSA's (MulT) and the GsiT authors' settings for MOSI except
the width, which is the same for both (``--dim``), so that GsiT has exactly a
third of MulT's encoder parameters.

The table reports steps per second per model and attention backend, the ratio
GsiT / MulT measured in the same run (the baseline is MulT on the same
backend), encoder parameters, and the peak resident memory of the process.

Usage::

    python benchmarks/bench_tasks.py            # batch 16, width 32, 20 timed steps (CPU: ~25 min)
    python benchmarks/bench_tasks.py --quick    # 4 timed steps, shorter sequences (CPU: ~1 min)

Measured on 2 CPU cores, 4 timed steps at MMSA's full lengths: dense 0.04
(MulT) and 0.06 (GsiT) steps/s, block 0.39 and 0.63 (GsiT 1.6 × MulT on both
backends, block attention 10 × dense; peak 7.8 GiB, the dense masks). With
``--quick``: dense 1.17 and 1.94, block 1.63 and 2.75 (GsiT 1.66 and 1.69 ×).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from brainenc.fusion.models import GsiT, MulT
from brainenc.tasks.sentiment import count_parameters, gsit_config, mult_config, synthetic_mmsa
from brainenc.tasks.sentiment.mmsa import FeatureDims, MMSADataset, load_mmsa, write_mmsa


def _data(batch: int, path, seq_lens: tuple[int, int, int]) -> MMSADataset:
    write_mmsa(path, synthetic_mmsa("mosi", n_samples=(4 * batch, batch, batch), seed=0,
                                    seq_lens=seq_lens))
    return load_mmsa(path, dataset="mosi")


def _model(name: str, dims: FeatureDims, dim: int, backend: str):
    make, config = (MulT, mult_config) if name == "mult" else (GsiT, gsit_config)
    options = {**config(dims, "mosi"), "dim": dim, "n_heads": 4, "backend": backend}
    torch.manual_seed(0)
    return make(**options)


def _steps_per_second(model, data: MMSADataset, batch: int, steps: int) -> float:
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = list(data.batches("train", batch, seed=0, epoch=0))
    times = []
    for step in range(steps + 2):                      # two warm-up steps
        b = batches[step % len(batches)]
        start = time.perf_counter()
        loss = (model(**b.model_inputs())[:, 0] - b.labels).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step >= 2:
            times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times)


def main() -> None:
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--quick", action="store_true",
                        help="4 timed steps on sequences a fifth as long (50, 100, 75 tokens)")
    args = parser.parse_args()
    steps = 4 if args.quick else args.steps
    seq_lens = (50, 100, 75) if args.quick else (50, 500, 375)
    with tempfile.TemporaryDirectory() as tmp:
        data = _data(args.batch, Path(tmp) / "mosi.pkl", seq_lens)
    print(f"MOSI-shaped unaligned batches of {args.batch} (padded lengths {seq_lens}), width {args.dim}, "
          f"{torch.get_num_threads()} threads, {steps} timed steps (median)")
    print(f"{'backend':<8}{'model':<6}{'encoder params':>16}{'steps/s':>10}{'GsiT/MulT':>11}")
    for backend in ("dense", "block"):
        rates = {}
        for name in ("mult", "gsit"):
            model = _model(name, data.dims, args.dim, backend)
            rates[name] = _steps_per_second(model, data, args.batch, steps)
            ratio = f"{rates['gsit'] / rates['mult']:>10.2f}x" if name == "gsit" else ""
            print(f"{backend:<8}{name:<6}{count_parameters(model, encoder_only=True):>16,}"
                  f"{rates[name]:>10.2f}{ratio:>11}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak:.0f} MiB")


if __name__ == "__main__":
    main()
