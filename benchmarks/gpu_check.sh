#!/usr/bin/env bash
# One pass on a CUDA machine: the tests that need compiled Triton kernels or
# himalaya's torch_cuda backend, then the GPU benchmarks. Results go to stdout
# and, when OUT is set, to $OUT/gpu_check.log.
#
#   bash benchmarks/gpu_check.sh            # python from PATH, brainenc importable
set -uo pipefail
log=${OUT:-.}/gpu_check.log
status=0
run() {
    echo "\$ $*" | tee -a "$log"
    "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || status=$rc
}
run nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
run python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.cuda.is_available())"
# compiled kernels, the model backends on CUDA, encoding on torch_cuda
run python -m pytest -q -x tests/test_fusion_kernel.py tests/test_fusion_attention.py \
    tests/test_fusion_models.py tests/test_encoding.py
# block-sparse Triton vs dense masked SDPA vs FlexAttention, N = 512 .. 8192
run python benchmarks/bench_fusion.py --dtype bf16
run python benchmarks/bench_fusion.py --dtype fp16 --lengths 2048 8192
run python benchmarks/bench_ridge.py --himalaya-backends torch_cuda
exit $status
