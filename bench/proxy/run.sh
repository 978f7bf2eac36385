#!/bin/bash
# Load benchmark: wafer as a pass-through reverse proxy against nginx as a
# reverse proxy, in front of the same upstream, in one run on this machine.
#
#   bench/proxy/run.sh                 # defaults below
#   WORKERS=2 DURATION=30 bench/proxy/run.sh
#
# The upstream is nginx (1 worker) serving a small static file. Both proxies
# get the same worker count, keep-alive to the upstream (32 idle connections),
# and access logs OFF (ACCESS_LOG=1: ON for both). Each proxy is measured with the same wrk runs:
#   throughput: wrk -t2 -c64  -d${DURATION}s --latency
#   latency:    wrk -t1 -c4   -d${LAT_DURATION}s --latency
# after a short warm-up, alternating between the two proxies for ROUNDS
# rounds. Prints one table with requests/s and p50/p90/p99 latency of the
# best round per proxy and run (this machine is shared, so the best round is
# the least disturbed one), and the ratio wafer/nginx.
#
# Environment: WAFER_BIN (default build/wafer), WORKERS (1), DURATION (15),
# LAT_DURATION (10), CONNS (64), THREADS (2), FILE_SIZE (1024 bytes), ROUNDS (2),
# PIN=1 to pin the upstream to CPU 0 and the proxies to CPU 1 with taskset
# (wrk then floats); off by default. ACCESS_LOG=1 turns the access log ON for
# both proxies (a JSON line per request into a file: wafer's own format, and
# an nginx log_format with the same fields).
set -euo pipefail
cd "$(dirname "$0")/../.."

WAFER_BIN=${WAFER_BIN:-build/wafer}
WORKERS=${WORKERS:-1}
DURATION=${DURATION:-15}
LAT_DURATION=${LAT_DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
FILE_SIZE=${FILE_SIZE:-1024}
PIN=${PIN:-0}
ROUNDS=${ROUNDS:-2}
ACCESS_LOG=${ACCESS_LOG:-0}

for tool in nginx wrk "$WAFER_BIN"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (run scripts/install-deps and scripts/build)" >&2; exit 2; }
done
WAFER_BIN=$(readlink -f "$WAFER_BIN")

dir=$(mktemp -d /tmp/wafer-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port pid
    for _ in $(seq 100); do
        kill -0 "$2" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

pin() { # cpu
    if [ "$PIN" = 1 ]; then echo "taskset -c $1"; fi
}

nginx_common() { # prefix
    cat <<EOF
daemon off;
master_process on;
user root;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
EOF
}

temp_paths() { # prefix
    echo "client_body_temp_path $1/t/body; proxy_temp_path $1/t/proxy; fastcgi_temp_path $1/t/fcgi; uwsgi_temp_path $1/t/uwsgi; scgi_temp_path $1/t/scgi;"
}

# --- upstream: nginx serving a small static file -----------------------------
up_port=$(free_port)
mkdir -p "$dir/up/www" "$dir/up/t"
head -c "$FILE_SIZE" /dev/urandom >"$dir/up/www/index.html"
{
    nginx_common "$dir/up"
    echo "worker_processes 1;"
    cat <<EOF
http {
    access_log off;
    $(temp_paths "$dir/up")
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$up_port reuseport backlog=4096;
        root $dir/up/www;
    }
}
EOF
} >"$dir/up/nginx.conf"
$(pin 0) nginx -p "$dir/up" -c "$dir/up/nginx.conf" -e "$dir/up/error.log" &
pids+=($!)
wait_port "$up_port" "$!" || { echo "upstream nginx did not start" >&2; cat "$dir/up/error.log" >&2; exit 1; }

# --- nginx as a reverse proxy -------------------------------------------------
ngx_port=$(free_port)
mkdir -p "$dir/ngx/t"
{
    nginx_common "$dir/ngx"
    echo "worker_processes $WORKERS;"
    cat <<EOF
http {
    log_format wjson escape=json '{"time":"\$time_iso8601","request_id":"\$request_id","client":{"ip":"\$remote_addr","port":\$remote_port},'
        '"method":"\$request_method","path":"\$uri","status":\$status,"bytes_in":\$request_length,"bytes_out":\$bytes_sent,'
        '"durations":{"total_ms":\$request_time,"upstream_ms":\$upstream_response_time},"upstream":"\$upstream_addr"}';
    $(if [ "$ACCESS_LOG" = 1 ]; then echo "access_log $dir/ngx/access.log wjson;"; else echo "access_log off;"; fi)
    $(temp_paths "$dir/ngx")
    keepalive_requests 1000000;
    upstream up { server 127.0.0.1:$up_port; keepalive 32; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$ngx_port reuseport backlog=4096;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Request-Id \$request_id;
        }
    }
}
EOF
} >"$dir/ngx/nginx.conf"

# --- wafer ------------------------------------------------------------------------
waf_port=$(free_port)
mkdir -p "$dir/waf"
cat >"$dir/waf/wafer.yaml" <<EOF
workers: $WORKERS
pid_file: ""
log:
  level: warn
  error_log: stderr
  access_log: $(if [ "$ACCESS_LOG" = 1 ]; then echo "$dir/waf/access.log"; else echo '"off"'; fi)
listen:
  - address: 127.0.0.1:$waf_port
    backlog: 4096
upstream:
  servers:
    - address: 127.0.0.1:$up_port
  keepalive: 32
admin: {enabled: false}   # benchmarks may run next to another wafer
EOF

run_wrk() { # label round url threads conns seconds -> appends a row to $dir/rows
    local out="$dir/wrk-${1// /-}-$2.txt"
    wrk -t"$4" -c"$5" -d"$6"s --latency "$3" >"$out" 2>&1 || true
    /usr/bin/python3 - "$1" "$2" "$out" >>"$dir/rows" <<'PY'
import re, sys
label, rnd, path = sys.argv[1], sys.argv[2], sys.argv[3]
t = open(path).read()
def ms(v, u):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[u]
rps = re.search(r"Requests/sec:\s+([\d.]+)", t)
pct = {p: ms(v, u) for p, v, u in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", t, re.M)}
errs = re.search(r"Socket errors: (.*)", t)
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
note = []
if errs: note.append("socket errors: " + errs.group(1).strip())
if non2xx: note.append("non-2xx: " + non2xx.group(1))
if not rps: note.append("wrk failed: " + t.strip().splitlines()[-1] if t.strip() else "wrk failed")
print("\t".join([label, rnd, rps.group(1) if rps else "0"] + ["%.3f" % pct.get(p, float("nan")) for p in ("50", "90", "99")] + ["; ".join(note)]))
PY
}

check_serving() { # name port pid
    wait_port "$2" "$3" || { echo "$1 did not start" >&2; return 1; }
    curl -sf -o /dev/null "http://127.0.0.1:$2/index.html" || { echo "$1 does not serve /index.html" >&2; return 1; }
}

: >"$dir/rows"
$(pin 1) "$WAFER_BIN" run -c "$dir/waf/wafer.yaml" 2>"$dir/waf/stderr.log" &
pids+=($!)
wafer_ok=1
check_serving wafer "$waf_port" "$!" || { wafer_ok=0; echo "--- wafer stderr:" >&2; tail -20 "$dir/waf/stderr.log" >&2; }
$(pin 1) nginx -p "$dir/ngx" -c "$dir/ngx/nginx.conf" -e "$dir/ngx/error.log" &
pids+=($!)
check_serving nginx "$ngx_port" "$!" || exit 1

# Both proxies run side by side (the idle one costs nothing); runs alternate
# between them so that load from elsewhere on the machine hits both alike.
for round in $(seq "$ROUNDS"); do
    for kind in throughput latency; do
        for name in wafer nginx; do
            if [ "$name" = wafer ]; then port=$waf_port; else port=$ngx_port; fi
            if [ "$name" = wafer ] && [ "$wafer_ok" = 0 ]; then
                printf 'wafer %s\t%s\t0\tnan\tnan\tnan\twafer did not serve\n' "$kind" "$round" >>"$dir/rows"
                continue
            fi
            url="http://127.0.0.1:$port/index.html"
            if [ "$kind" = throughput ]; then
                wrk -t"$THREADS" -c"$CONNS" -d2s "$url" >/dev/null 2>&1 || true   # warm-up
                run_wrk "$name $kind" "$round" "$url" "$THREADS" "$CONNS" "$DURATION"
            else
                run_wrk "$name $kind" "$round" "$url" 1 4 "$LAT_DURATION"
            fi
            echo "round $round: $(tail -1 "$dir/rows" | cut -f1-6 | tr '\t' ' ')" >&2
        done
    done
done

if [ "$ACCESS_LOG" = 1 ]; then
    echo "access log lines: wafer $(cat "$dir"/waf/access.log 2>/dev/null | wc -l), nginx $(cat "$dir"/ngx/access.log 2>/dev/null | wc -l)" >&2
fi
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -r)"
echo "upstream: nginx 1 worker, ${FILE_SIZE}-byte static file; proxies: $WORKERS worker(s), upstream keepalive 32, access logs $([ "$ACCESS_LOG" = 1 ] && echo on || echo off)"
echo "throughput run: wrk -t$THREADS -c$CONNS -d${DURATION}s --latency; latency run: wrk -t1 -c4 -d${LAT_DURATION}s --latency"
echo
/usr/bin/python3 - "$dir/rows" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
# best round (highest req/s) per proxy and run kind
best = {}
for r in rows:
    if r[0] not in best or float(r[2]) > float(best[r[0]][2]):
        best[r[0]] = r
print("| %-18s | %10s | %9s | %9s | %9s | %s" % ("run (best of %s)" % max(int(r[1]) for r in rows), "req/s", "p50 ms", "p90 ms", "p99 ms", "notes"))
print("|%s|%s|%s|%s|%s|------" % ("-" * 20, "-" * 12, "-" * 11, "-" * 11, "-" * 11))
for k in ("wafer throughput", "nginx throughput", "wafer latency", "nginx latency"):
    r = best.get(k)
    if r:
        print("| %-18s | %10.0f | %9s | %9s | %9s | %s" % (k, float(r[2]), r[3], r[4], r[5], r[6] if len(r) > 6 else ""))
print()
for kind in ("throughput", "latency"):
    w, n = best.get("wafer " + kind), best.get("nginx " + kind)
    if w and n and float(n[2]) > 0:
        print("wafer/nginx %-10s req/s ratio: %.2f   p99 ratio: %s" % (
            kind, float(w[2]) / float(n[2]),
            "%.2f" % (float(w[5]) / float(n[5])) if float(n[5]) > 0 and w[5] != "nan" else "n/a"))
PY
