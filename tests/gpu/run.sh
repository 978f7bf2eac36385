#!/bin/bash
# The GPU checks and benchmarks in one go, for one call on a GPU machine:
#   tests/gpu/run.sh BUNDLE_DIR OUT_DIR [what...]
# BUNDLE_DIR is made by tests/gpu/bundle.sh (binaries built elsewhere, their C libraries, fixtures, scripts);
# logs go to OUT_DIR. what: agree ring bench torch (default: all), in that order. Exit status: 1 if a check failed.
set -u
b=$(cd "$1" && pwd)
out=$2
shift 2
what=${*:-"agree ring bench torch"}
mkdir -p "$out"
export LD_LIBRARY_PATH="$b/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export WAFER_SRC="$b"
export PYTHONUNBUFFERED=1
fail=0
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$out/gpu.txt"
for w in $what; do
    case $w in
    agree)
        echo "== agreement (CPU vs GPU)"
        timeout 240 "$b/bin/gpu_agree" 8 2>&1 | tee "$out/agree.log"
        [ "${PIPESTATUS[0]}" = 0 ] || { echo "agreement: FAILED"; fail=1; }
        ;;
    ring)
        if [ -x "$b/bin/ring_test" ]; then
            echo "== ring"
            # a spinning scheduler kernel and lazy module loading can deadlock: load eagerly
            CUDA_MODULE_LOADING=EAGER timeout 240 "$b/bin/ring_test" 2>&1 | tee "$out/ring.log"
            [ "${PIPESTATUS[0]}" = 0 ] || { echo "ring: FAILED"; fail=1; }
        fi
        ;;
    bench)
        echo "== bench_gpu"
        timeout 240 "$b/bin/bench_gpu" -k /tmp/wafer-bench-models -s "${BENCH_SECS:-0.3}" 2>&1 | tee "$out/bench.log"
        if [ -x "$b/bin/bench_ring" ]; then
            CUDA_MODULE_LOADING=EAGER timeout 120 "$b/bin/bench_ring" 2>&1 | tee -a "$out/bench.log"
        fi
        ;;
    torch)
        echo "== PyTorch on the same weights"
        timeout 300 python3 "$b/bench/gpu/torch_bench.py" --peak --model /tmp/wafer-bench-models/mobilebert \
            --name mobilebert --len 128 --secs "${BENCH_SECS:-0.3}" 2>&1 | grep -v Warning | tee "$out/torch.log"
        timeout 200 python3 "$b/bench/gpu/torch_bench.py" --model /tmp/wafer-bench-models/bert-small \
            --name bert-small --len 64 --secs "${BENCH_SECS:-0.3}" 2>&1 | grep -v Warning | tee -a "$out/torch.log"
        ;;
    esac
done
exit $fail
