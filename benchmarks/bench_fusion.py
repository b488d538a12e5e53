"""Time block-sparse multimodal attention against dense masked attention.

Three modality segments of equal length fill a joint sequence of ``N`` tokens
per sample; the GsiT forward interlaced table (T->V, V->A, A->T) allows 3 of
the 9 segment blocks. Each method computes forward + backward (the backward of
the output sum) and is timed as the median of a few repeats after warm-up:

* ``dense``: ``torch.nn.functional.scaled_dot_product_attention`` with the
  boolean ``(B, 1, N, N)`` mask built from the segment ids and the table (no
  row is fully masked with this table, so SDPA's output is well defined);
* ``block``: :func:`brainenc.fusion.attention.block_attention`, the PyTorch
  path that only multiplies allowed blocks;
* ``triton``: :func:`brainenc.fusion.kernels.block_attention.block_sparse_attention`
  (CUDA only: under the CPU interpreter it is far too slow to time);
* ``flex``: PyTorch FlexAttention with a block mask from the same mask rule,
  compiled with ``torch.compile`` (CUDA only: FlexAttention has no CPU
  backward).

Outputs and input gradients are compared with the dense method (max abs
difference). The table reports ms per method and the speed-up over dense; on
CUDA also the peak memory of each method.

Usage::

    python benchmarks/bench_fusion.py              # CPU: N in 512..2048; GPU: N in 512..8192
    python benchmarks/bench_fusion.py --quick      # N in {256, 512}, one repeat
    python benchmarks/bench_fusion.py --dtype bf16 --lengths 1024 4096
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from brainenc.fusion.attention import block_attention
from brainenc.fusion.layout import ModalityLayout, gsit_forward_table

MODALITIES = ("text", "vision", "audio")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TARGET_SPEEDUP = 2.5

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def make_problem(batch: int, heads: int, head_dim: int, n_tokens: int, dtype: torch.dtype,
                 device: torch.device, seed: int = 0):
    """Random q, k, v and the segment ids of three equal segments summing to ``n_tokens``."""
    base = n_tokens // len(MODALITIES)
    lengths = [base] * len(MODALITIES)
    lengths[0] += n_tokens - sum(lengths)  # text takes the remainder
    layout = ModalityLayout(MODALITIES, torch.tensor([lengths] * batch))
    segment_ids = layout.segment_ids(n_tokens).to(device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    shape = (batch, heads, n_tokens, head_dim)
    q, k, v = (torch.randn(shape, generator=generator).to(device, dtype) for _ in range(3))
    return q, k, v, segment_ids


def dense_mask(segment_ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Boolean ``(B, 1, N, N)`` SDPA mask (True = attend) from segment ids and the table."""
    ids = segment_ids.long()
    valid = ids >= 0
    allowed = table[ids.clamp(min=0)[:, :, None], ids.clamp(min=0)[:, None, :]]
    return (allowed & valid[:, :, None] & valid[:, None, :])[:, None]


def build_methods(segment_ids: torch.Tensor, table: torch.Tensor, n_tokens: int,
                  device: torch.device) -> tuple[dict[str, AttentionFn], dict[str, str]]:
    """Attention callables ``fn(q, k, v)`` per method, and the reasons for skipped ones."""
    methods: dict[str, AttentionFn] = {}
    skipped: dict[str, str] = {}
    mask = dense_mask(segment_ids, table)
    methods["dense"] = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    methods["block"] = lambda q, k, v: block_attention(q, k, v, segment_ids, segment_ids, table)

    if device.type == "cuda":
        try:
            from brainenc.fusion.kernels.block_attention import block_sparse_attention
        except ImportError as err:
            skipped["triton"] = f"cannot import the kernel: {err}"
        else:
            methods["triton"] = lambda q, k, v: block_sparse_attention(
                q, k, v, segment_ids, segment_ids, table)
    else:
        skipped["triton"] = "needs CUDA (the CPU interpreter is far too slow to time)"

    if device.type != "cuda":
        skipped["flex"] = "FlexAttention has no backward on the CPU"
    else:
        try:
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        except ImportError as err:
            skipped["flex"] = f"FlexAttention unavailable: {err}"
        else:
            n_seg = table.shape[0]
            ids = segment_ids.long()
            flat_table = table.flatten()

            def mask_mod(b, h, q_idx, kv_idx):
                qs, ks = ids[b, q_idx], ids[b, kv_idx]
                entry = flat_table[qs.clamp(min=0) * n_seg + ks.clamp(min=0)]
                return (qs >= 0) & (ks >= 0) & entry

            block_mask = create_block_mask(mask_mod, ids.shape[0], None, n_tokens, n_tokens,
                                           device=device)
            compiled = torch.compile(flex_attention)
            methods["flex"] = lambda q, k, v: compiled(q, k, v, block_mask=block_mask)
    return methods, skipped


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_backward(fn: AttentionFn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """Output and input gradients of ``fn``, backward of the output sum."""
    leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
    out = fn(*leaves)
    out.float().sum().backward()
    grads = [t.grad if t.grad is not None else torch.zeros_like(t) for t in leaves]
    return out.detach(), grads


def time_method(fn: AttentionFn, q, k, v, device: torch.device, warmup: int,
                repeats: int) -> tuple[float, float | None]:
    """Median ms of forward + backward and peak memory (MiB, CUDA only)."""
    for _ in range(warmup):
        forward_backward(fn, q, k, v)
    synchronize(device)
    peak = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        forward_backward(fn, q, k, v)
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return statistics.median(times), peak


def max_abs_diff(result, reference) -> float:
    """Largest absolute difference over the output and the three gradients."""
    (out, grads), (ref_out, ref_grads) = result, reference
    pairs = [(out, ref_out)] + list(zip(grads, ref_grads))
    return max(float((a.float() - b.float()).abs().max()) for a, b in pairs)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--lengths", type=int, nargs="+",
                        help="joint sequence lengths N (default: 512..8192 on CUDA, 512..2048 on CPU)")
    parser.add_argument("--dtype", choices=sorted(DTYPES),
                        help="default fp16 on CUDA, fp32 on CPU")
    parser.add_argument("--device", help="default cuda when available, else cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="N in {256, 512}, one repeat")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = DTYPES[args.dtype or ("fp16" if device.type == "cuda" else "fp32")]
    if args.quick:
        lengths, repeats, warmup = [256, 512], 1, 1
    else:
        default = [512, 1024, 2048, 4096, 8192] if device.type == "cuda" else [512, 1024, 2048]
        lengths, repeats, warmup = default, args.repeats, args.warmup
    lengths = sorted(args.lengths or lengths)
    table = gsit_forward_table(MODALITIES).to(device)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"cpu ({torch.get_num_threads()} threads)")
    print(f"device {name}, torch {torch.__version__}, dtype {str(dtype).replace('torch.', '')}, "
          f"B={args.batch} H={args.heads} D={args.head_dim}, 3 equal segments, "
          f"GsiT forward table (density {int(table.sum())}/{table.numel()}), "
          f"forward + backward, median of {repeats} after {warmup} warm-up")

    rows = []
    reported_skips: set[str] = set()
    for n_tokens in lengths:
        q, k, v, segment_ids = make_problem(args.batch, args.heads, args.head_dim, n_tokens,
                                            dtype, device)
        methods, skipped = build_methods(segment_ids, table, n_tokens, device)
        for method, reason in skipped.items():
            if method not in reported_skips:
                print(f"  skipping {method}: {reason}")
                reported_skips.add(method)
        reference = forward_backward(methods["dense"], q, k, v)
        for method, fn in methods.items():
            try:
                diff = 0.0 if method == "dense" else max_abs_diff(
                    forward_backward(fn, q, k, v), reference)
                ms, peak = time_method(fn, q, k, v, device, warmup, repeats)
            except Exception as err:  # a failing method should not hide the others' numbers
                print(f"  N={n_tokens} {method} failed: {type(err).__name__}: {err}")
                continue
            rows.append((n_tokens, method, ms, peak, diff))
        del reference
        if device.type == "cuda":
            torch.cuda.empty_cache()

    dense_ms = {n: ms for n, method, ms, _, _ in rows if method == "dense"}
    header = f"{'N':>6} {'method':>7} {'ms':>10} {'vs dense':>9} {'max|diff|':>10}"
    if device.type == "cuda":
        header += f" {'peak MiB':>9}"
    print(header)
    for n_tokens, method, ms, peak, diff in rows:
        ratio = dense_ms[n_tokens] / ms if n_tokens in dense_ms else math.nan
        line = f"{n_tokens:>6} {method:>7} {ms:>10.2f} {ratio:>8.2f}x {diff:>10.2e}"
        if peak is not None:
            line += f" {peak:>9.1f}"
        print(line)
    best = {}
    for n_tokens, method, ms, _, _ in rows:
        if method in ("block", "triton", "flex") and n_tokens in dense_ms:
            best.setdefault(method, []).append(dense_ms[n_tokens] / ms)
    for method, ratios in best.items():
        print(f"{method}: speed-up vs dense {min(ratios):.2f}x to {max(ratios):.2f}x "
              f"(target >= {TARGET_SPEEDUP}x at the largest N: "
              f"{'met' if ratios[-1] >= TARGET_SPEEDUP else 'not met'})")


if __name__ == "__main__":
    main()
