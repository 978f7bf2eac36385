#!/bin/bash
# The GPU checks and benchmarks in one go, for one call on a GPU machine:
#   tests/gpu/run.sh BUNDLE_DIR OUT_DIR [what...]
# BUNDLE_DIR is made by tests/gpu/bundle.sh (binaries built elsewhere, their C libraries, fixtures, scripts);
# logs go to OUT_DIR. what: agree ring sched bench torch fused default tune profile chain (default: agree ring bench
# torch), in the
# order given. Exit status: 1
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
    sched)
        # the two GPU schedulers (WAFER_RING_SCHED: device graph launch, conditional WHILE graph), each test run
        # with one then the other, in the same call
        ss=${SCHEDS:-launch while}
        for m in $ss; do
            echo "== ring soak, scheduler $m"
            WAFER_RING_SCHED=$m CUDA_MODULE_LOADING=EAGER timeout 90 "$b/bin/ring_test" "${SOAK:-1000000}" 2>&1 \
                | tee -a "$out/sched.log"
            [ "${PIPESTATUS[0]}" = 0 ] || { echo "ring ($m): FAILED"; fail=1; }
        done
        for mb in "mobilebert 128" "bert-small 64"; do
            for m in $ss; do
                echo "== ring bench $mb, scheduler $m"
                WAFER_RING_SCHED=$m CUDA_MODULE_LOADING=EAGER timeout 90 "$b/bin/ring_test" bench $mb 2>&1 \
                    | tee -a "$out/sched.log"
                [ "${PIPESTATUS[0]}" = 0 ] || { echo "ring bench $mb ($m): FAILED"; fail=1; }
            done
        done
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
    default)
        echo "== the default model (models/default): bench_gpu -d at lengths 16..128, then PyTorch on the same weights"
        lens=${DEF_LENS:-16,32,64,128}
        bats=${DEF_BATCHES:-1,8,64,256,1024,4096,16384,65535}
        export WAFER_BENCH_MAX_TOKENS=${DEF_MAX_TOKENS:-2097152}
        timeout 150 "$b/bin/bench_gpu" -v 1 -d "$b/models/default" -l "$lens" -b "$bats" -s "${BENCH_SECS:-0.3}" \
            2>&1 | tee "$out/default.log"
        echo "== the same without the first-rows-only last layer (WAFER_CUDA_CLS_ONLY=0)"
        WAFER_CUDA_CLS_ONLY=0 timeout 120 "$b/bin/bench_gpu" -d "$b/models/default" -l "$lens" -b "$bats" \
            -s "${BENCH_SECS:-0.3}" 2>&1 | grep -v debug | tee -a "$out/default.log"
        echo "== the same as main had it (WAFER_CUDA_CLS_ONLY=0 WAFER_CUDA_TUNE=0)"
        WAFER_CUDA_CLS_ONLY=0 WAFER_CUDA_TUNE=0 timeout 120 "$b/bin/bench_gpu" -d "$b/models/default" -l "$lens" \
            -b "$bats" -s "${BENCH_SECS:-0.3}" 2>&1 | grep -v debug | tee -a "$out/default.log"
        timeout 200 python3 "$b/bench/gpu/torch_bench.py" --model "$b/models/default" --name default --len "$lens" \
            --batches "$bats" --max-tokens "$WAFER_BENCH_MAX_TOKENS" --secs "${BENCH_SECS:-0.3}" 2>&1 \
            | grep -v Warning | tee -a "$out/default.log"
        ;;
    tune)
        echo "== cuBLASLt algorithms by measurement (default) against the heuristic's first (WAFER_CUDA_TUNE=0), mobilebert"
        timeout 100 "$b/bin/bench_gpu" -v 1 -k /tmp/wafer-bench-models -m mobilebert -l 128 -b "${TUNE_BATCHES:-1,8,64,1024,4096}" \
            -s "${BENCH_SECS:-0.3}" 2>&1 | tee "$out/tune.log"
        WAFER_CUDA_TUNE=0 timeout 80 "$b/bin/bench_gpu" -m mobilebert -l 128 -b "${TUNE_BATCHES:-1,8,64,1024,4096}" \
            -s "${BENCH_SECS:-0.3}" 2>&1 | tee -a "$out/tune.log"
        ;;
    profile)
        echo "== ncu: one graph replay's kernels (mobilebert, batch 1 and 1024; tuned and not)"
        ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
        for cfg in "1 1" "1 0" "1024 1"; do
            set -- $cfg
            WAFER_CUDA_PROFILE_RUN=6 WAFER_CUDA_TUNE=$2 timeout 120 "$ncu" --clock-control none --profile-from-start off \
                --graph-profiling node --metrics gpu__time_duration.sum --csv --log-file "$out/ncu_b$1_t$2.csv" \
                "$b/bin/bench_gpu" -m mobilebert -l 128 -b "$1" -s 0 >/dev/null 2>&1
            echo "ncu batch $1 tune $2: exit $?, $(grep -c gpu__time_duration "$out/ncu_b$1_t$2.csv" 2>/dev/null) kernels"
            WAFER_CUDA_PROFILE_RUN=6 WAFER_CUDA_TUNE=$2 timeout 60 "$ncu" --clock-control none --profile-from-start off \
                --graph-profiling graph --metrics gpu__time_duration.sum --csv --log-file "$out/ncu_b$1_t$2_graph.csv" \
                "$b/bin/bench_gpu" -m mobilebert -l 128 -b "$1" -s 0 >/dev/null 2>&1
            grep gpu__time_duration "$out/ncu_b$1_t$2_graph.csv" | tail -1
        done
        ;;
    chain)
        # MobileBERT's FFN blocks as one kernel a layer (ffn_chain.cu) against the cuBLASLt pairs, same call
        bs=${CHAIN_BATCHES:-1,2,4,8,16,64,1024}
        secs=${BENCH_SECS:-0.3}
        echo "== agreement with the FFN chain kernel in every bucket and programmatic dependent launch"
        WAFER_CUDA_FFN_CHAIN_MAX_TOKENS=1000000 WAFER_CUDA_PDL=1 timeout 120 "$b/bin/gpu_agree" 8 2>&1 \
            | tee "$out/agree_chain.log"
        [ "${PIPESTATUS[0]}" = 0 ] || { echo "agreement (FFN chain everywhere, PDL): FAILED"; fail=1; }
        echo "== bench_gpu mobilebert: FFN chain (default) / WAFER_CUDA_FFN_CHAIN=0 / WAFER_CUDA_PDL=1 / every bucket"
        timeout 60 "$b/bin/bench_gpu" -v 1 -k /tmp/wafer-bench-models -m mobilebert -l 128 -b "$bs" -s "$secs" 2>&1 \
            | grep -v -e 'algorithms chosen' | tee "$out/chain.log"
        WAFER_CUDA_FFN_CHAIN=0 timeout 60 "$b/bin/bench_gpu" -k /tmp/wafer-bench-models -m mobilebert -l 128 -b "$bs" \
            -s "$secs" 2>&1 | grep '^| wafer' | sed 's/^| wafer /| chain off /' | tee -a "$out/chain.log"
        WAFER_CUDA_PDL=1 timeout 60 "$b/bin/bench_gpu" -k /tmp/wafer-bench-models -m mobilebert -l 128 -b "$bs" \
            -s "$secs" 2>&1 | grep '^| wafer' | sed 's/^| wafer /| chain+pdl /' | tee -a "$out/chain.log"
        WAFER_CUDA_FFN_CHAIN_MAX_TOKENS=1000000 timeout 60 "$b/bin/bench_gpu" -k /tmp/wafer-bench-models \
            -m mobilebert -l 128 -b 16,32,64,256,1024 -s "$secs" 2>&1 | grep '^| wafer' \
            | sed 's/^| wafer /| chain all /' | tee -a "$out/chain.log"
        echo "== ring (GPU-scheduled) mobilebert: FFN chain (default) / off / PDL"
        CUDA_MODULE_LOADING=EAGER timeout 75 "$b/bin/ring_test" bench mobilebert 128 2>&1 | tee -a "$out/chain.log"
        WAFER_CUDA_FFN_CHAIN=0 CUDA_MODULE_LOADING=EAGER timeout 75 "$b/bin/ring_test" bench mobilebert 128 2>&1 \
            | sed 's/^| wafer ring/| chain off ring/' | tee -a "$out/chain.log"
        WAFER_CUDA_PDL=1 CUDA_MODULE_LOADING=EAGER timeout 75 "$b/bin/ring_test" bench mobilebert 128 2>&1 \
            | sed 's/^| wafer ring/| chain+pdl ring/' | tee -a "$out/chain.log"
        echo "== PyTorch, same weights"
        timeout 200 python3 "$b/bench/gpu/torch_bench.py" --peak --model /tmp/wafer-bench-models/mobilebert \
            --name mobilebert --len 128 --batches "$bs" --secs "$secs" 2>&1 | grep -v Warning | tee -a "$out/chain.log"
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
