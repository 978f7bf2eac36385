#!/bin/bash
# The GPU checks and benchmarks in one go, for one call on a GPU machine:
#   tests/gpu/run.sh BUNDLE_DIR OUT_DIR [what...]
# BUNDLE_DIR is made by tests/gpu/bundle.sh (binaries built elsewhere, their C libraries, fixtures, scripts);
# logs go to OUT_DIR. what: agree ring bench torch fused (default: all but fused), in the order given. Exit status: 1
# if a check failed.
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
        timeout 120 "$b/bin/gpu_agree" 8 2>&1 | tee "$out/agree.log"
        if [ "${PIPESTATUS[0]}" != 0 ]; then
            echo "agreement: FAILED"
            fail=1
        fi
        echo "== agreement with the tensor-core attention kernel (WAFER_CUDA_ATTN_TC=1)"
        WAFER_CUDA_ATTN_TC=1 timeout 120 "$b/bin/gpu_agree" 8 2>&1 | tee "$out/agree_tc.log"
        [ "${PIPESTATUS[0]}" = 0 ] || { echo "agreement (tensor-core attention): FAILED"; fail=1; }
        ;;
    ring)
        echo "== ring: dma-buf export, soak, self-scheduled latency/throughput"
        # a spinning scheduler kernel and lazy module loading can deadlock: load eagerly
        CUDA_MODULE_LOADING=EAGER timeout 90 "$b/bin/ring_test" "${SOAK:-1000000}" 2>&1 | tee "$out/ring.log"
        [ "${PIPESTATUS[0]}" = 0 ] || { echo "ring: FAILED"; fail=1; }
        CUDA_MODULE_LOADING=EAGER timeout 75 "$b/bin/ring_test" bench mobilebert 128 2>&1 | tee -a "$out/ring.log"
        CUDA_MODULE_LOADING=EAGER timeout 40 "$b/bin/ring_test" bench bert-small 64 2>&1 | tee -a "$out/ring.log"
        ;;
    bench)
        echo "== bench_gpu"
        timeout 150 "$b/bin/bench_gpu" -k /tmp/wafer-bench-models -s "${BENCH_SECS:-0.3}" 2>&1 | tee "$out/bench.log"
        echo "== bench_gpu with the tensor-core attention kernel (WAFER_CUDA_ATTN_TC=1)"
        WAFER_CUDA_ATTN_TC=1 timeout 60 "$b/bin/bench_gpu" -m mobilebert,bert-small -l 128,64 -b 1,64,1024,4096 \
            -s "${BENCH_SECS:-0.3}" 2>&1 | tee -a "$out/bench.log"
        ;;
    fused)
        echo "== the fused kernels (WAFER_CUDA_FUSED=1): agreement with every bucket fused, bench, soak"
        WAFER_CUDA_FUSED=1 WAFER_CUDA_FUSED_MAX_TOKENS=1000000 timeout 120 "$b/bin/gpu_agree" 8 2>&1 | tee "$out/agree_fused.log"
        [ "${PIPESTATUS[0]}" = 0 ] || { echo "agreement (fused kernels): FAILED"; fail=1; }
        WAFER_CUDA_FUSED=1 WAFER_CUDA_FUSED_MAX_TOKENS=1000000 timeout 120 "$b/bin/bench_gpu" -v 1 \
            -b 1,2,4,8,16,32,64,128,256,1024 -s "${BENCH_SECS:-0.3}" 2>&1 | tee "$out/bench_fused.log"
        echo "== the fused kernels without programmatic dependent launch (WAFER_CUDA_PDL=0)"
        WAFER_CUDA_FUSED=1 WAFER_CUDA_FUSED_MAX_TOKENS=1000000 WAFER_CUDA_PDL=0 timeout 40 "$b/bin/bench_gpu" -b 1,8 \
            -s "${BENCH_SECS:-0.3}" 2>&1 | tee -a "$out/bench_fused.log"
        WAFER_CUDA_FUSED=1 CUDA_MODULE_LOADING=EAGER timeout 90 "$b/bin/ring_test" "${SOAK:-1000000}" 2>&1 | tee "$out/ring_fused.log"
        [ "${PIPESTATUS[0]}" = 0 ] || { echo "ring (fused kernels): FAILED"; fail=1; }
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
