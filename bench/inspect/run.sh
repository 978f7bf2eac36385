#!/bin/bash
# Inspection through the proxy on a GPU machine: whether backend auto picks the GPU, whether the GPU and CPU
# backends decide a fixed set of requests (reqs.py) alike, and requests/s with wrk (benign GET; a unique query
# per request, uniq.lua, so that every request reaches the model). Results go to $OUT.
#   Run from the repository root; BUNDLE holds bin/{wafer,wafer-cuda.so,wrk,nginx} and lib/ (the shared
#   libraries they need from the build machine, as tests/gpu/bundle.sh collects them).
set -u
R=$(pwd); D=${BUNDLE:-$R/.devwork/inspect}; S=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH=$D/lib
chmod +x $D/bin/*
M=$R/models/default
UA="User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
{ nvidia-smi -L; nproc; } > $OUT/env.txt 2>&1
mkdir -p /tmp/ng/tmp
cat > /tmp/ng/nginx.conf <<NG
daemon on; master_process on; user root; worker_processes 4; pid /tmp/ng/nginx.pid; error_log /tmp/ng/error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path /tmp/ng/tmp; proxy_temp_path /tmp/ng/tmp; fastcgi_temp_path /tmp/ng/tmp; uwsgi_temp_path /tmp/ng/tmp; scgi_temp_path /tmp/ng/tmp; keepalive_requests 1000000;
  server { listen 127.0.0.1:18081 reuseport backlog=4096; location / { return 200 "ok\n"; } } }
NG
$D/bin/nginx -p /tmp/ng -c /tmp/ng/nginx.conf || echo "nginx failed" >> $OUT/env.txt
mk() {
cat > /tmp/$1.yaml <<Y
workers: $4
log: {level: info, access_log: off}
listen: [{address: "127.0.0.1:$5", backlog: 4096}]
upstream: {servers: [{address: "127.0.0.1:18081"}], keepalive: 128}
detection: {model: $M, backend: $2, threads: $3, max_batch: 64, batch_wait: 200us}
policy: {mode: block}
Y
}
mk gpu auto 0 1 18080   # the cuda backend serves one worker (docs/detection-service.md)
mk cpu cpu 8 4 18090
for b in gpu cpu; do
  port=18080; [ $b = cpu ] && port=18090
  $D/bin/wafer run -c /tmp/$b.yaml 2> $OUT/wafer_$b.log &
  P=$!
  for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
  timeout 60 python3 $S/reqs.py $port > $OUT/codes_$b.txt 2>&1
  echo "== $b benign GET (cached UA, safe path)" >> $OUT/bench.txt
  timeout 30 $D/bin/wrk -t4 -c64 -d8s --latency -H "$UA" "http://127.0.0.1:$port/products/view?id=12345&page=2" >> $OUT/bench.txt 2>&1
  echo "== $b unique query per request (model-bound)" >> $OUT/bench.txt
  timeout 30 $D/bin/wrk -t4 -c64 -d8s --latency -s $S/uniq.lua "http://127.0.0.1:$port/" >> $OUT/bench.txt 2>&1
  kill -TERM $P; wait $P
done
echo "== nginx direct" >> $OUT/bench.txt
timeout 20 $D/bin/wrk -t4 -c64 -d5s --latency -H "$UA" "http://127.0.0.1:18081/products/view?id=12345&page=2" >> $OUT/bench.txt 2>&1
kill $(cat /tmp/ng/nginx.pid)
paste <(awk '{print $2}' $OUT/codes_gpu.txt) <(awk '{print $2}' $OUT/codes_cpu.txt) | awk '{n++; if($1!=$2) d++; if ($1==403) b++} END {print n" requests, "d+0" decisions differ, "b+0" blocked on GPU"}' > $OUT/summary.txt
cat $OUT/summary.txt; grep -h "backend\|error" $OUT/wafer_*.log | head; grep -A12 "==" $OUT/bench.txt | grep -E "==|Requests/sec|99%|Non-2xx" 
