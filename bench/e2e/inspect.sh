#!/bin/bash
# One wafer with inspection on, alone in front of bench/e2e's upstream, under bench/e2e's request mix: requests/s,
# latency and where the units went (docs/benchmarks.md "Where the CPU time goes under bench/e2e's mix").
#
#   bench/e2e/inspect.sh TAG MIX.wrk [EXTRA.yaml]
#
# MIX.wrk: a request list made by bench/e2e/mix.py. EXTRA.yaml: lines added under `detection:` (for example
# `cache_entries: 0`). Environment: WAFER_BIN (build/wafer), W (workers, 2), T (inference threads, W), WARM (warm-up
# seconds, 2), D (seconds, 10), ROUNDS (1), PERF (1: `perf record -e cpu-clock -g` of wafer during each round).
# Writes into /tmp/wafer-inspect-TAG: the configuration, wafer's log, wrk's output, /metrics before and after, and
# perf.data; prints mix.lua's E2E line per round and wafer's unit counters at exit.
set -u
cd "$(dirname "$0")/../.."
root=$(pwd)
tag=$1 mix=$(readlink -f "$2") extra=${3:-/dev/null}
bin=$(readlink -f "${WAFER_BIN:-build/wafer}")
W=${W:-2} D=${D:-10} ROUNDS=${ROUNDS:-1} WARM=${WARM:-2}
d=/tmp/wafer-inspect-$tag
rm -rf "$d"; mkdir -p "$d/up/t"
fp() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(fp) wp=$(fp) ap=$(fp)
body=$(head -c 1024 /dev/zero | tr '\0' 'x')
cat >"$d/up/nginx.conf" <<Y
daemon off; master_process on; user root; pid $d/up/nginx.pid; error_log $d/up/error.log warn;
worker_processes 1;
events { worker_connections 4096; }
http {
    access_log off; keepalive_requests 1000000; client_max_body_size 1m;
    client_body_temp_path $d/up/t/body; proxy_temp_path $d/up/t/proxy; fastcgi_temp_path $d/up/t/fcgi;
    uwsgi_temp_path $d/up/t/uwsgi; scgi_temp_path $d/up/t/scgi;
    server { listen 127.0.0.1:$up reuseport backlog=4096; default_type text/plain; location / { return 200 "$body"; } }
}
Y
nginx -p "$d/up" -c "$d/up/nginx.conf" -e "$d/up/error.log" & upid=$!
cat >"$d/wafer.yaml" <<Y
workers: $W
pid_file: ""
log:
  level: info
  error_log: stderr
  access_log: "off"
admin:
  address: 127.0.0.1:$ap
listen:
  - address: 127.0.0.1:$wp
    backlog: 4096
upstream:
  servers:
    - address: 127.0.0.1:$up
  keepalive: 32
detection:
  model: $root/models/default
  backend: cpu
  threads: ${T:-$W}
$(sed 's/^/  /' "$extra")
policy:
  mode: block
  ban:
    detections: 0
Y
"$bin" run -c "$d/wafer.yaml" 2>"$d/stderr.log" & wpid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$wp") 2>/dev/null && break; sleep 0.1; done
run_wrk() { E2E_MIX=$mix wrk -t2 -c64 --timeout 10s -s "$root/bench/e2e/mix.lua" "$@" "http://127.0.0.1:$wp/"; }
[ "$WARM" -gt 0 ] && run_wrk -d"${WARM}s" >/dev/null 2>&1
curl -s "http://127.0.0.1:$ap/metrics" >"$d/metrics0.txt"
for r in $(seq "$ROUNDS"); do
    if [ "${PERF:-0}" = 1 ]; then
        perf record -e cpu-clock -F 2000 -g -o "$d/perf$r.data" -p "$wpid" -- sleep "$D" >/dev/null 2>&1 & ppid=$!
    fi
    run_wrk -d"${D}s" --latency >"$d/wrk$r.txt" 2>&1
    [ "${PERF:-0}" = 1 ] && wait "$ppid"
    grep E2E "$d/wrk$r.txt" | sed "s/^/$tag round $r: /"
done
curl -s "http://127.0.0.1:$ap/metrics" >"$d/metrics1.txt"
kill -TERM "$wpid"; wait "$wpid"
kill -TERM "$upid"; wait "$upid" 2>/dev/null
grep -h ': counters: ' "$d/stderr.log" | tail -1 | sed 's/.*: counters: //' | tr ' ' '\n' |
    grep -E '^(requests|units_|overload|verdict)' | tr '\n' ' '
echo
