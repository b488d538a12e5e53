"""Compile the block-sparse attention kernels for CUDA targets, no GPU needed.

Run as a script (the Triton interpreter must be off): it compiles the forward,
dK/dV and dQ kernels through Triton's full pipeline down to a cubin (``ptxas``
ships with the triton wheel) for the requested architectures, dtypes and head
sizes, with and without causal blocks and segment mass, at the default tile
size, and prints one JSON line per kernel: architecture, names, shared memory.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import warnings

if os.environ.get("TRITON_INTERPRET"):
    sys.exit("unset TRITON_INTERPRET: the interpreter cannot compile kernels")

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from brainenc.fusion.kernels import block_attention as kernels  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DATA_POINTERS = {"q_ptr", "k_ptr", "v_ptr", "o_ptr", "do_ptr", "dq_ptr", "dk_ptr", "dv_ptr"}
FLOAT_POINTERS = {"lse_ptr", "delta_ptr", "mass_ptr"}


def signature(kernel, dtype: str, constants: dict) -> dict[str, str]:
    """Triton argument types of ``kernel`` as launched by the autograd wrapper."""
    types = {}
    for name in kernel.arg_names:
        if name in constants:
            types[name] = "constexpr"
        elif name in DATA_POINTERS:
            types[name] = f"*{dtype}"
        elif name in FLOAT_POINTERS:
            types[name] = "*fp32"
        elif name.endswith("_ptr"):
            types[name] = "*i32"
        elif name in ("qk_scale", "scale"):
            types[name] = "fp32"
        else:
            types[name] = "i32"
    return types


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, nargs="+", default=[80, 90])
    parser.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), default=sorted(DTYPES))
    parser.add_argument("--head-dim", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--causal", choices=("both", "on", "off"), default="both",
                        help="kernels with causal blocks (and segment mass), without, or both")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    causal_modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.causal]
    for arch, dtype, head_dim, causal in itertools.product(
        args.arch, args.dtype, args.head_dim, causal_modes
    ):
        tile = kernels.default_tile_size(DTYPES[dtype], head_dim)
        common = dict(
            HEAD_DIM=head_dim, BLOCK_M=tile, BLOCK_N=tile,
            PRECISION=kernels._precision(DTYPES[dtype]), HAS_CAUSAL=causal,
        )
        jobs = [
            (kernels._forward_kernel, dict(common, WITH_MASS=causal, SEG_BLOCK=16)),
            (kernels._backward_dkdv_kernel, common),
            (kernels._backward_dq_kernel, common),
        ]
        for kernel, constants in jobs:
            source = ASTSource(kernel, signature(kernel, dtype, constants), constants)
            compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32))
            print(json.dumps({
                "arch": arch, "kernel": kernel.__name__, "dtype": dtype, "head_dim": head_dim,
                "tile": tile, "causal": causal, "mass": constants.get("WITH_MASS", False),
                "cubin_bytes": len(compiled.asm["cubin"]), "shared": compiled.metadata.shared,
            }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
