#!/bin/sh
# wafer's CPU engine and PyTorch on this machine's CPU, same models, lengths,
# batch and thread counts (docs/benchmarks.md, "Inference engine (CPU)").
#
#   bench/infer/side_by_side.sh BENCH_INFER [THREADS...]     (default threads: 1 8)
#   env: BATCH (64), SECS (1: seconds per point), TORCH_BENCH (path of torch_cpu.py, default beside this script)
#
# OpenBLAS chooses its kernels from the CPU model; when it does not know the
# model it falls back to SSE3 ("Prescott") kernels. Then, unless
# OPENBLAS_CORETYPE is already set, this picks SkylakeX (AVX-512) or Haswell
# (AVX2) from the CPU's flags and says so. (wafer itself uses OpenBLAS only on
# CPUs without AVX2+FMA, or with WAFER_CPU_GEMM=blas; PyTorch does not use it.)
set -eu
bin=$1
shift
[ $# -gt 0 ] || set -- 1 8
batch=${BATCH:-64}
secs=${SECS:-1}
torch_bench=${TORCH_BENCH:-$(dirname "$0")/torch_cpu.py}
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
    core=$(OPENBLAS_VERBOSE=2 "$bin" bench -t 1 -b 1 -l 4 -m bert -s 0 2>&1 | sed -n 's/^Core: //p' | head -1)
    case "$core" in
    Prescott | Core2 | Penryn | Dunnington | Nehalem | Atom | Sandybridge | "")
        if grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX
        elif grep -qw avx2 /proc/cpuinfo; then export OPENBLAS_CORETYPE=Haswell; fi
        echo "OpenBLAS picked '$core' kernels; using OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}" ;;
    *) echo "OpenBLAS kernels: $core" ;;
    esac
fi
grep -m1 'model name' /proc/cpuinfo || true
for t in "$@"; do
    "$bin" bench -t "$t" -b "$batch" -s "$secs"
    python3 "$torch_bench" -t "$t" -b "$batch" -s "$secs"
done
