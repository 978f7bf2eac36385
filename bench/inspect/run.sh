#!/bin/bash
# The GPU backend in the proxy, on the GPU machine, in one call (results under $OUT):
#   1. ring_test: the soak over one ring, then over 4 rings served by one scheduler with a producer and a consumer
#      thread per ring at once; then the probes (which CUDA work waits for a running scheduler), each in its own
#      process;
#   2. gpu_agree (CPU-versus-GPU agreement of the model code);
#   3. wafer, `backend: auto`, 4 workers: it must log "listening", answer /ready 200 on the admin port, and exit on
#      SIGTERM; the labelled sample (tests/fixtures/detection/sample.jsonl) through it and through wafer on the CPU
#      backend, one request each, status codes compared; wrk, benign GET and a unique query per request (every
#      request through the model), with 4 workers and with 1, and the CPU backend with 4.
# Order: 1, 3, then the probes and 2 (the least likely to change). Run from the repository root; BUNDLE (default .devwork/gpuring) is bench/inspect/bundle.sh's folder. $OUT gets
# summary.txt, bench.txt and results.tgz (every log: the run tool brings back at most 8 files).
set -u
R=$(pwd); D=${BUNDLE:-$R/.devwork/gpuring}; S=$D/scripts
FINAL=$OUT; OUT=/tmp/wafer-inspect-run; rm -rf $OUT; mkdir -p $OUT
trap 'cp $OUT/summary.txt $OUT/bench.txt $FINAL/ 2>/dev/null; tar czf $FINAL/results.tgz -C $(dirname $OUT) $(basename $OUT)' EXIT
export LD_LIBRARY_PATH=$D/lib:/usr/local/cuda/lib64 WAFER_CUDA_MODULE=$D/bin/wafer-cuda.so WAFER_SRC=$R
export CUDA_MODULE_LOADING=EAGER PYTHONUNBUFFERED=1
chmod +x $D/bin/*
M=$R/models/default
SAMPLE=$R/tests/fixtures/detection/sample.jsonl
SECS=${SECS:-5}
UA="User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
fail=0
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; nproc; date -u; } > $OUT/env.txt 2>&1
cat $OUT/env.txt

echo "== ring_test (1 ring, then 4 rings, one scheduler)" | tee $OUT/ring.txt
timeout -k 5 90 $D/bin/ring_test ${SOAK:-1000000} 4 >> $OUT/ring.txt 2>&1 || { echo "ring_test: FAILED"; fail=1; }
grep -E "soak|scheduler|ring_test|FAIL" $OUT/ring.txt

mkdir -p /tmp/ng/tmp
cat > /tmp/ng/nginx.conf <<NG
daemon on; master_process on; user root; worker_processes 4; pid /tmp/ng/nginx.pid; error_log /tmp/ng/error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path /tmp/ng/tmp; proxy_temp_path /tmp/ng/tmp; fastcgi_temp_path /tmp/ng/tmp; uwsgi_temp_path /tmp/ng/tmp; scgi_temp_path /tmp/ng/tmp; keepalive_requests 1000000;
  server { listen 127.0.0.1:18081 reuseport backlog=4096; location / { return 200 "ok\n"; } } }
NG
$D/bin/nginx -p /tmp/ng -c /tmp/ng/nginx.conf || { echo "nginx failed: the Python upstream"; \
  (python3 $S/upstream.py 18081 3 4 > /dev/null 2>&1 &); sleep 1; }

# start NAME BACKEND WORKERS PORT ADMINPORT: wafer in the background, waits for "listening"; WPID is its pid
start() {
  cat > /tmp/$1.yaml <<Y
workers: $3
log: {level: info, access_log: off}
listen: [{address: "127.0.0.1:$4", backlog: 4096}]
upstream: {servers: [{address: "127.0.0.1:18081"}], keepalive: 128}
admin: {address: "127.0.0.1:$5"}
detection: {model: $M, backend: $2, threads: 8, max_batch: 64, batch_wait: 200us}
policy: {mode: block, ban: {detections: 0}}
Y
  local t0=$EPOCHREALTIME
  $D/bin/wafer run -c /tmp/$1.yaml 2> $OUT/wafer_$1.log &
  WPID=$!
  for i in $(seq 300); do grep -q "listening on" $OUT/wafer_$1.log && break; kill -0 $WPID 2>/dev/null || break; sleep 0.1; done
  if grep -q "listening on" $OUT/wafer_$1.log; then
    echo "$1: listening after $(python3 -c "print('%.2f' % ($EPOCHREALTIME - $t0))") s" | tee -a $OUT/summary.txt
  else
    echo "$1: NOT LISTENING after 30 s" | tee -a $OUT/summary.txt; fail=1
  fi
  local ready=$(python3 -c "import urllib.request as u; print(u.urlopen('http://127.0.0.1:$5/ready', timeout=5).status)" 2>&1 | tail -1)
  echo "$1: admin /ready: $ready" | tee -a $OUT/summary.txt
  [ "$ready" = 200 ] || fail=1
}
# stop NAME ADMINPORT: metrics, SIGTERM, waits up to 30 s
stop() {
  python3 -c "import urllib.request as u; print(u.urlopen('http://127.0.0.1:$2/metrics', timeout=5).read().decode())" \
    2>&1 | grep -E "^wafer_detect_(units|gpu|batches|queue)" > $OUT/metrics_$1.txt
  kill -TERM $WPID
  for i in $(seq 300); do kill -0 $WPID 2>/dev/null || break; sleep 0.1; done
  if kill -0 $WPID 2>/dev/null; then
    echo "$1: did NOT exit within 30 s of SIGTERM" | tee -a $OUT/summary.txt; fail=1; kill -KILL $WPID
  else
    wait $WPID; echo "$1: exited on SIGTERM, status $?" | tee -a $OUT/summary.txt
  fi
}
bench() {
  echo "== $1 benign GET (cached User-Agent, safe path)" >> $OUT/bench.txt
  timeout -k 5 30 $D/bin/wrk -t4 -c64 -d${SECS}s --latency -H "$UA" "http://127.0.0.1:$2/products/view?id=12345&page=2" >> $OUT/bench.txt 2>&1
  echo "== $1 unique query per request (model-bound)" >> $OUT/bench.txt
  timeout -k 5 30 $D/bin/wrk -t4 -c64 -d${SECS}s --latency -s $S/uniq.lua "http://127.0.0.1:$2/" >> $OUT/bench.txt 2>&1
}

start gpu4 auto 4 18080 19901
timeout -k 5 120 python3 $S/decisions.py $SAMPLE 127.0.0.1 18080 > $OUT/codes_gpu.txt 2>&1
bench gpu4 18080
stop gpu4 19901
start gpu1 auto 1 18082 19902
bench gpu1 18082
stop gpu1 19902
start cpu4 cpu 4 18090 19903
timeout -k 5 120 python3 $S/decisions.py $SAMPLE 127.0.0.1 18090 > $OUT/codes_cpu.txt 2>&1
bench cpu4 18090
stop cpu4 19903
kill $(cat /tmp/ng/nginx.pid) 2>/dev/null

paste -d' ' $OUT/codes_gpu.txt $OUT/codes_cpu.txt | awk '{n++; if ($2 != $5 || $1 != $4) {d++; print "differs:", $0 > "/dev/stderr"} if ($2 == 403) b++; if ($2 == 0) e++}
  END {print n" requests, "d+0" decisions differ between the GPU and CPU backends, "b+0" blocked, "e+0" without response"}' \
  2>> $OUT/summary.txt | tee -a $OUT/summary.txt
grep -q " 0 decisions differ" $OUT/summary.txt || fail=1
grep -h "backend\|GPU\|host CUDA\|error\|stopped" $OUT/wafer_*.log | tee -a $OUT/summary.txt
cat $OUT/metrics_*.txt
grep -E "^==|Requests/sec|Latency  |50%|99%|Non-2xx|Socket errors" $OUT/bench.txt
echo "== probes: CUDA work while a scheduler runs (each in its own process)" | tee -a $OUT/ring.txt
for w in region session run sched free; do
  timeout -k 5 30 $D/bin/ring_test probe $w >> $OUT/ring.txt 2>&1; echo "probe $w: exit $?" >> $OUT/ring.txt
done
grep -E "^probe" $OUT/ring.txt | tee -a $OUT/summary.txt

echo "== gpu_agree" | tee $OUT/agree.txt
timeout -k 5 ${AGREE_SECS:-120} $D/bin/gpu_agree 8 >> $OUT/agree.txt 2>&1 || { echo "gpu_agree: FAILED"; fail=1; }
grep -E "^\||gpu_agree" $OUT/agree.txt | tail -9 | tee -a $OUT/summary.txt
echo "run.sh: $([ $fail = 0 ] && echo ok || echo FAILED)" | tee -a $OUT/summary.txt
exit $fail
