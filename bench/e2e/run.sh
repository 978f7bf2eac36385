#!/bin/bash
# End-to-end load benchmark (docs/benchmarks.md "End to end"): three systems in front of the same upstream, in one
# run on this machine, with the same worker count, one table at the end.
#
#   bench/e2e/run.sh                              # everything, defaults below
#   DURATION=5 ROUNDS=1 WORKERS=1 bench/e2e/run.sh  # a quick check
#   PARTS=tls bench/e2e/run.sh                    # only the TLS rows
#
# Systems (each with the same number of workers, WORKERS; every one listens from the start, the idle ones cost
# nothing):
#   wafer      wafer with inspection on: `detection:` with MODEL (models/default), BACKEND (cpu) and, on the CPU
#              backend, as many inference threads as workers (INFER_THREADS to change it; 0: one per CPU), the other
#              detection settings at their defaults (the verdict cache included); `policy:`
#              mode block, flow bans off (every request of the benchmark comes from one client address, which a
#              ban would shut out after five attacks). When this wafer refuses those sections (`wafer -t`), it runs
#              as a plain proxy and its rows say "PLAIN PROXY".
#   modsec     nginx with ModSecurity v3 and the OWASP Core Rule Set (Debian's libnginx-mod-http-modsecurity and
#              modsecurity-crs): Debian's /etc/nginx/modsecurity.conf with SecRuleEngine On (blocking), audit log
#              off, response body access off (wafer does not inspect responses either), then crs-setup.conf as
#              shipped (anomaly scoring, inbound threshold 5) with tx.paranoia_level=PARANOIA (1), then every CRS
#              rule file. By default Accept-Charset is taken off CRS's restricted headers (rule 900250): CRS 3.3.4
#              as shipped blocks every request carrying that header, which all of CSIC 2010's do (three quarters
#              of the benign requests of the list; docs/benchmarks.md, "Detection"), and a WAF that refuses most
#              of the traffic does less work per request than one that passes it. CRS_ALLOW_ACCEPT_CHARSET=0: as
#              shipped.
#   nginx      plain nginx as a reverse proxy.
# All proxies use keep-alive to the upstream (32 idle connections) and have access logs off. The upstream is
# nginx (1 worker) answering every request 200 with the same UP_SIZE-byte body (UPSTREAM=python: bench/e2e/
# upstream.py instead, for machines without nginx).
#
# Part "mix": the request list made by bench/e2e/mix.py from SAMPLE (benign GET with a query string, form POST and
# JSON POST in the proportions MIX, with ATTACK_SHARE of labelled attacks spread evenly), sent by wrk with
# bench/e2e/mix.lua (each request of the list in turn; statuses counted in wrk's Lua done()):
#   wrk -t$THREADS -c$CONNS -d${DURATION}s --latency   after a ${WARMUP}s warm-up,
# alternating between the systems for ROUNDS rounds; the table keeps each system's best round (highest req/s; this
# machine is shared, the best round is the least disturbed one). Then the correctness pass (bench/e2e/check.py):
# every distinct request of the list once, one at a time, to each system: the share of attacks and of benign
# requests answered 403.
#
# Part "tls": nginx and wafer as plain TLS-terminating proxies (no inspection: this part compares TLS), the same
# certificate, generated here (ECDSA P-256 and RSA 2048, self-signed), the same protocols (TLS_PROTOCOLS), TLS 1.2
# ciphers (TLS_CIPHERS) and TLS 1.3 suites (TLS13_SUITES, given to nginx with ssl_conf_command): one AES-128-GCM
# cipher per key type by default, so that every client negotiates the same one whichever side's preference counts;
# session resumption as each server has it by default (the clients here never resume).
#   keep-alive:  wrk over keep-alive TLS connections (-t$THREADS -c$CONNS), GET of a small path: requests/s; the
#                protocol and cipher that `openssl s_client` negotiates with each server are printed beside it
#   handshakes:  bench/e2e/tlsload.c (built here with cc): CONNS threads, each opening connection after connection
#                with a full handshake (a fresh SSL object, no session resumption; wrk resumes its previous session
#                when it reconnects, so it cannot measure this) and one GET with "Connection: close": handshakes/s,
#                latency from connect() to the complete response; its negotiated protocol and cipher are printed
#                (TLS_CLIENT_VERSION=1.2 or 1.3 pins the client's version)
# wafer's TLS rows are skipped, with the reason, while `wafer -t` refuses the TLS keys of listen (WAFER_TLS_KEYS:
# the YAML lines under a listen entry, CERT and KEY replaced by the files' paths).
#
# Environment (defaults):
#   WAFER_BIN (build/wafer)  MODEL (models/default)  BACKEND (cpu; gpu.sh of the bundle: cuda)  INFER_THREADS (the
#   worker count)  WORKERS ("1 2")  SYSTEMS ("wafer modsec nginx")  PARTS ("mix tls")  DURATION (15)  WARMUP (2)
#   ROUNDS (3)  THREADS (2, wrk threads)  CONNS (64)  KEEP (0; 1: keep the temp dir with every log and config)
#   SAMPLE (tests/fixtures/detection/sample.jsonl: 69 distinct benign requests of the three shapes, among them the
#     known false positives of the default model: a fixture, not a traffic sample)
#   SPLIT (a folder with a split's test.jsonl, train/data.py's output: SAMPLE is then bench/detection/sample.py's
#     stratified sample of it, about 8,000 distinct benign requests of the three shapes: use it for the figures)
#   DATA (the data sets, e.g. ../shared/datasets: the split is built from them into the temp dir, and SPLIT set)
#   COUNT (requests in the list: 2000; 20000 with SPLIT or DATA)  ATTACK_SHARE (0.05)  MIX (60:25:15)
#   PARANOIA (1)  CRS_ALLOW_ACCEPT_CHARSET (1)
#   TLS_CERTS ("ecdsa rsa")  TLS_PROTOCOLS ("TLSv1.2 TLSv1.3")  TLS_CIPHERS (ECDHE-ECDSA-AES128-GCM-SHA256:
#     ECDHE-RSA-AES128-GCM-SHA256)  TLS13_SUITES (TLS_AES_128_GCM_SHA256)  TLS_CLIENT_VERSION (empty)
#   UP_SIZE (1024)  UPSTREAM (nginx)  PIN (0; 1: upstream on CPU 0, proxies on CPU 1, wrk floats)
#   INSTALL (1; 0: never apt-get)
#   WAFER_DETECTION_YAML: a file whose text replaces the detection/policy sections this script writes for wafer
#   Tool paths, for a carried bundle (bench/e2e/bundle.sh): NGINX, WRK, OPENSSL, TLSLOAD, PYTHON, MODSEC_MODULE,
#   MODSEC_CONF, MODSEC_UNICODE, CRS_SETUP, CRS_RULES
#
# Installs what it lacks from Debian's packages (nginx-light, wrk, libnginx-mod-http-modsecurity, modsecurity-crs,
# openssl) when apt-get is there; wafer must be built (./scripts/build).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

WAFER_BIN=${WAFER_BIN:-build/wafer}
MODEL=${MODEL:-models/default}
BACKEND=${BACKEND:-cpu}
INFER_THREADS=${INFER_THREADS:-}
WORKERS=${WORKERS:-1 2}
SYSTEMS=${SYSTEMS:-wafer modsec nginx}
PARTS=${PARTS:-mix tls}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
SAMPLE=${SAMPLE:-tests/fixtures/detection/sample.jsonl}
COUNT=${COUNT:-$([ -n "${SPLIT:-}${DATA:-}" ] && echo 20000 || echo 2000)}
ATTACK_SHARE=${ATTACK_SHARE:-0.05}
MIX=${MIX:-60:25:15}
PARANOIA=${PARANOIA:-1}
CRS_ALLOW_ACCEPT_CHARSET=${CRS_ALLOW_ACCEPT_CHARSET:-1}
TLS_PROTOCOLS=${TLS_PROTOCOLS:-TLSv1.2 TLSv1.3}
TLS_CIPHERS=${TLS_CIPHERS:-ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256}
TLS_CERTS=${TLS_CERTS:-ecdsa rsa}
TLS_CLIENT_VERSION=${TLS_CLIENT_VERSION:-}
TLS13_SUITES=${TLS13_SUITES:-TLS_AES_128_GCM_SHA256}
UP_SIZE=${UP_SIZE:-1024}
UPSTREAM=${UPSTREAM:-nginx}
PIN=${PIN:-0}
KEEP=${KEEP:-0}
INSTALL=${INSTALL:-1}
NGINX=${NGINX:-nginx}
WRK=${WRK:-wrk}
OPENSSL=${OPENSSL:-openssl}
PYTHON=${PYTHON:-/usr/bin/python3}
[ -x "$PYTHON" ] || PYTHON=python3
MODSEC_MODULE=${MODSEC_MODULE:-/usr/lib/nginx/modules/ngx_http_modsecurity_module.so}
MODSEC_CONF=${MODSEC_CONF:-/etc/nginx/modsecurity.conf}
MODSEC_UNICODE=${MODSEC_UNICODE:-/etc/nginx/unicode.mapping}
CRS_SETUP=${CRS_SETUP:-/etc/modsecurity/crs/crs-setup.conf}
CRS_RULES=${CRS_RULES:-/usr/share/modsecurity-crs/rules}

log() { echo "e2e: $*" >&2; }
has() { case " $SYSTEMS " in *" $1 "*) return 0 ;; esac; return 1; }
part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }

for s in $SYSTEMS; do
    case $s in wafer|modsec|nginx) ;; *) log "unknown system $s (SYSTEMS: wafer modsec nginx)"; exit 2 ;; esac
done
for p in $PARTS; do
    case $p in mix|tls) ;; *) log "unknown part $p (PARTS: mix tls)"; exit 2 ;; esac
done

# --- what this needs, from Debian's packages -----------------------------------------------------------------
missing=""
if [ "$UPSTREAM" != python ] || has modsec || has nginx; then
    command -v "$NGINX" >/dev/null || missing="$missing nginx-light"
fi
command -v "$WRK" >/dev/null || missing="$missing wrk"
command -v "$OPENSSL" >/dev/null || missing="$missing openssl"
if has modsec; then
    [ -f "$MODSEC_MODULE" ] || missing="$missing libnginx-mod-http-modsecurity"
    [ -d "$CRS_RULES" ] || missing="$missing modsecurity-crs"
fi
if [ -n "$missing" ]; then
    if [ "$INSTALL" = 1 ] && command -v apt-get >/dev/null; then
        log "installing$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
        log "missing:$missing (and no apt-get, or INSTALL=0)"
        exit 2
    fi
fi
[ -x "$WAFER_BIN" ] || { log "no wafer at $WAFER_BIN (./scripts/build)"; exit 2; }
WAFER_BIN=$(readlink -f "$WAFER_BIN")
MODEL=$(readlink -f "$MODEL")
# the GPU ring's scheduler kernel spins: modules must be loaded before it starts (docs/ring.md)
[ "$BACKEND" = cpu ] || export CUDA_MODULE_LOADING=${CUDA_MODULE_LOADING:-EAGER}

dir=$(mktemp -d /tmp/wafer-e2e.XXXXXX)
pids=()
stop() { # pid...: TERM, wait up to 5 s, KILL
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "$@"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
cleanup() {
    [ ${#pids[@]} -gt 0 ] && stop "${pids[@]}"
    if [ "$KEEP" = 1 ]; then log "kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # port pid
    for _ in $(seq 300); do
        kill -0 "$2" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
pin() { if [ "$PIN" = 1 ]; then echo "taskset -c $1"; fi; }

nginx_head() { # prefix workers
    cat <<EOF
daemon off;
master_process on;
user root;
pid $1/nginx.pid;
error_log $1/error.log warn;
worker_processes $2;
events { worker_connections 4096; }
EOF
}
nginx_http_common() { # prefix
    cat <<EOF
    access_log off;
    client_body_temp_path $1/t/body; proxy_temp_path $1/t/proxy; fastcgi_temp_path $1/t/fcgi;
    uwsgi_temp_path $1/t/uwsgi; scgi_temp_path $1/t/scgi;
    keepalive_requests 1000000;
    client_max_body_size 1m;
EOF
}
proxy_location() {
    cat <<'EOF'
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Request-Id $request_id;
        }
EOF
}

# --- the upstream ------------------------------------------------------------------------------------------------
up_port=$(free_port)
if [ "$UPSTREAM" = python ]; then
    $(pin 0) "$PYTHON" bench/e2e/upstream.py "$up_port" "$UP_SIZE" 1 2>"$dir/upstream.log" &
    pids+=($!)
else
    mkdir -p "$dir/up/t"
    body=$(head -c "$UP_SIZE" /dev/zero | tr '\0' 'x')
    {
        nginx_head "$dir/up" 1
        echo "http {"
        nginx_http_common "$dir/up"
        cat <<EOF
    server {
        listen 127.0.0.1:$up_port reuseport backlog=4096;
        default_type text/plain;
        location / { return 200 "$body"; }
    }
}
EOF
    } >"$dir/up/nginx.conf"
    $(pin 0) "$NGINX" -p "$dir/up" -c "$dir/up/nginx.conf" -e "$dir/up/error.log" &
    pids+=($!)
fi
wait_port "$up_port" "$!" || { log "upstream did not start"; cat "$dir"/up/error.log "$dir"/upstream.log 2>/dev/null >&2; exit 1; }

# --- ModSecurity's rules file (the same for every worker count) ---------------------------------------------------
modsec_rules() {
    mkdir -p "$dir/msc/tmp"
    cp "$MODSEC_UNICODE" "$dir/msc/unicode.mapping"
    # Debian's recommended configuration, blocking, no audit log, no response inspection, files in the temp dir
    sed -e 's/^SecRuleEngine .*/SecRuleEngine On/' \
        -e 's/^SecAuditEngine .*/SecAuditEngine Off/' \
        -e 's/^SecResponseBodyAccess .*/SecResponseBodyAccess Off/' \
        -e 's/^SecStatusEngine .*/SecStatusEngine Off/' \
        -e "s|^SecAuditLog .*|SecAuditLog $dir/msc/audit.log|" \
        -e "s|^SecTmpDir .*|SecTmpDir $dir/msc/tmp/|" -e "s|^SecDataDir .*|SecDataDir $dir/msc/tmp/|" \
        -e "s|^SecUnicodeMapFile unicode.mapping|SecUnicodeMapFile $dir/msc/unicode.mapping|" \
        "$MODSEC_CONF" >"$dir/msc/modsecurity.conf"
    {
        echo "Include $dir/msc/modsecurity.conf"
        echo "Include $CRS_SETUP"
        echo "SecAction \"id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level=$PARANOIA\""
        if [ "$CRS_ALLOW_ACCEPT_CHARSET" = 1 ]; then
            echo "SecAction \"id:900250,phase:1,nolog,pass,t:none,setvar:'tx.restricted_headers=/content-encoding/ /proxy/ /lock-token/ /content-range/ /if/'\""
        fi
        echo "Include $CRS_RULES/*.conf"
    } >"$dir/msc/main.conf"
}
has modsec && modsec_rules

# --- the systems, for one worker count -----------------------------------------------------------------------------
declare -A port
sys_pids=()
waf_mode=""

# wafer's inspection settings: detection (model, backend) and policy (block; flow bans off)
wafer_detection_yaml() { # workers
    if [ -n "${WAFER_DETECTION_YAML:-}" ]; then cat "$WAFER_DETECTION_YAML"; return; fi
    cat <<EOF
detection:
  model: $MODEL
  backend: $BACKEND
  threads: ${INFER_THREADS:-$1}
policy:
  mode: block
  ban:
    detections: 0
EOF
}
wafer_yaml() { # workers listen-address extra-listen-yaml(may be empty) inspect(0/1)
    cat <<EOF
workers: $1
pid_file: ""
log:
  level: info
  error_log: stderr
  access_log: "off"
listen:
  - address: $2
    backlog: 4096
$3
upstream:
  servers:
    - address: 127.0.0.1:$up_port
  keepalive: 32
admin: {enabled: false}   # benchmarks may run next to another wafer
EOF
    [ "$4" = 1 ] && wafer_detection_yaml "$1"
    true
}

start_systems() { # workers
    local w=$1 d
    sys_pids=()
    if has wafer && part mix; then
        d="$dir/waf$w"; mkdir -p "$d"; port[wafer]=$(free_port)
        wafer_yaml "$w" "127.0.0.1:${port[wafer]}" "" 1 >"$d/wafer.yaml"
        if "$WAFER_BIN" -t -c "$d/wafer.yaml" >"$d/check.log" 2>&1; then
            waf_mode="inspecting ($BACKEND)"
        else
            log "wafer -t refuses the detection/policy sections ($(grep -m1 -v '^$' "$d/check.log")): wafer runs as a PLAIN PROXY"
            wafer_yaml "$w" "127.0.0.1:${port[wafer]}" "" 0 >"$d/wafer.yaml"
            waf_mode="PLAIN PROXY (no inspection)"
        fi
        $(pin 1) "$WAFER_BIN" run -c "$d/wafer.yaml" 2>"$d/stderr.log" &
        sys_pids+=($!); pids+=($!)
        wait_port "${port[wafer]}" "$!" || { log "wafer did not start:"; tail -20 "$d/stderr.log" >&2; exit 1; }
    fi
    for s in modsec nginx; do
        has $s && part mix || continue
        d="$dir/$s$w"; mkdir -p "$d/t"; port[$s]=$(free_port)
        {
            [ $s = modsec ] && echo "load_module $MODSEC_MODULE;"
            nginx_head "$d" "$w"
            echo "http {"
            nginx_http_common "$d"
            [ $s = modsec ] && echo "    modsecurity on; modsecurity_rules_file $dir/msc/main.conf;"
            echo "    upstream up { server 127.0.0.1:$up_port; keepalive 32; keepalive_requests 1000000; }"
            echo "    server {"
            echo "        listen 127.0.0.1:${port[$s]} reuseport backlog=4096;"
            proxy_location
            echo "    }"
            echo "}"
        } >"$d/nginx.conf"
        $(pin 1) "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/error.log" &
        sys_pids+=($!); pids+=($!)
        wait_port "${port[$s]}" "$!" || { log "$s did not start:"; tail -20 "$d/error.log" >&2; exit 1; }
    done
}
stop_systems() {
    [ ${#sys_pids[@]} -gt 0 ] && stop "${sys_pids[@]}"
    local keep=() p q
    for p in "${pids[@]}"; do
        for q in "${sys_pids[@]}"; do [ "$p" = "$q" ] && continue 2; done
        keep+=("$p")
    done
    pids=("${keep[@]}")
    sys_pids=()
}

# rows: system \t workers \t traffic \t round \t rps \t p50 \t p99 \t 2xx \t 403 \t other \t errors \t note
: >"$dir/rows"
parse_row() { # system workers traffic round output-file: appends a row to $dir/rows
    "$PYTHON" - "$@" >>"$dir/rows" <<'PY'
import re, sys
s, w, t, r, path = sys.argv[1:6]
text = open(path, errors="replace").read()
m = re.search(r"^E2E (.*)$", text, re.M)
def ms(v, u):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[u]
note = ""
if m:  # bench/e2e/mix.lua's or tlsload's line
    f = dict(kv.split("=", 1) for kv in m.group(1).split())
    rate = f["hps"] if "hps" in f else f["rps"]
    row = [rate, f["p50_ms"], f["p99_ms"], f["s2xx"], f["s403"],
           str(int(f["s429"]) + int(f["s503"]) + int(f["sother"])), f["errors"]]
    if "proto" in f:
        note = "%s %s %s%s" % (f["proto"], f["cipher"], f.get("group", ""),
                               ", %s resumed" % f["resumed"] if int(f["resumed"]) else "")
else:  # wrk's own summary
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    pct = {p: ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
    reqs = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    err = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    n, bad = int(reqs.group(1)) if reqs else 0, int(non2xx.group(1)) if non2xx else 0
    row = [rps.group(1) if rps else "0", "%.3f" % pct.get("50", float("nan")), "%.3f" % pct.get("99", float("nan")),
           str(n - bad), "", str(bad), str(sum(int(x) for x in err.groups())) if err else "0"]
    if not rps:
        note = "failed: " + " ".join(text.split())[-200:]
print("\t".join([s, w, t, r] + row + [note]))
PY
    log "$(tail -1 "$dir/rows" | cut -f1-7 | tr '\t' ' ')"
}
wrk_row() { # system workers traffic round url [wrk options...]
    local s=$1 w=$2 t=$3 r=$4 url=$5 out
    shift 5
    out="$dir/wrk-$s-$w-${t// /_}-$r.txt"
    E2E_MIX=${E2E_MIX:-} "$WRK" -t"$THREADS" -c"$CONNS" -d"$WARMUP"s --timeout 10s "$@" "$url" >/dev/null 2>&1 || true
    E2E_MIX=${E2E_MIX:-} "$WRK" -t"$THREADS" -c"$CONNS" -d"$DURATION"s --timeout 10s --latency "$@" "$url" >"$out" 2>&1 || true
    parse_row "$s" "$w" "$t" "$r" "$out"
}
hs_row() { # system workers traffic round port: new TLS connections, one request each (bench/e2e/tlsload.c)
    local s=$1 w=$2 t=$3 r=$4 p=$5 out v=()
    out="$dir/tlsload-$s-$w-${t// /_}-$r.txt"
    [ -n "$TLS_CLIENT_VERSION" ] && v=(-V "$TLS_CLIENT_VERSION")
    "$TLSLOAD" -c "$CONNS" -d "$WARMUP" -n 1 "${v[@]}" 127.0.0.1 "$p" >/dev/null 2>&1 || true
    "$TLSLOAD" -c "$CONNS" -d "$DURATION" -n 1 "${v[@]}" 127.0.0.1 "$p" >"$out" 2>&1 || true
    parse_row "$s" "$w" "$t" "$r" "$out"
}

# --- part 1: the request mix -----------------------------------------------------------------------------------------
if part mix; then
    if [ -z "${SPLIT:-}" ] && [ -n "${DATA:-}" ]; then
        log "building the split from $DATA (train/data.py, about a minute)"
        "$PYTHON" train/data.py --data "$DATA" --out "$dir/split" >"$dir/split.log"
        SPLIT="$dir/split"
    fi
    if [ -n "${SPLIT:-}" ]; then # a split's test.jsonl: the same stratified sample as bench/detection
        "$PYTHON" bench/detection/sample.py --test "$SPLIT/test.jsonl" --out "$dir/sample.jsonl" 2>"$dir/sample.json"
        SAMPLE="$dir/sample.jsonl"
    fi
    "$PYTHON" bench/e2e/mix.py --sample "$SAMPLE" --out "$dir/mix" --count "$COUNT" --attack-share "$ATTACK_SHARE" \
        --mix "$MIX" 2>"$dir/mix.json"
    log "request list: $(cat "$dir/mix.json")"
    first=1
    for w in $WORKERS; do
        start_systems "$w"
        if [ "$first" = 1 ]; then
            for s in $SYSTEMS; do
                "$PYTHON" bench/e2e/check.py "$dir/mix.jsonl" 127.0.0.1 "${port[$s]}" >"$dir/check-$s.json"
                log "correctness $s: $(cat "$dir/check-$s.json")"
            done
            first=0
        fi
        for r in $(seq "$ROUNDS"); do
            for s in $SYSTEMS; do
                E2E_MIX="$dir/mix.wrk" wrk_row "$s" "$w" mix "$r" "http://127.0.0.1:${port[$s]}/" -s bench/e2e/mix.lua
            done
        done
        stop_systems
        # wafer's counters at exit (every round and the correctness pass): did inspection keep up?
        grep -h ': counters: ' "$dir/waf$w/stderr.log" 2>/dev/null | tail -1 | sed 's/.*: counters: //' >"$dir/counters-$w" || true
    done
fi

# --- part 2: TLS -------------------------------------------------------------------------------------------------------
# wafer's listen-level TLS keys (docs/configuration.md, listen[].tls); `wafer -t` decides whether this wafer has TLS.
WAFER_TLS_KEYS=${WAFER_TLS_KEYS:-"    tls:
      certificates:
        - cert: CERT
          key: KEY
      protocols: [$(echo $TLS_PROTOCOLS | sed 's/ /, /g')]
      ciphers: \"$TLS_CIPHERS\"
      ciphersuites: \"$TLS13_SUITES\""}
tls_systems=""
has wafer && tls_systems="wafer"
has nginx && tls_systems="$tls_systems nginx"
if part tls && [ -n "$tls_systems" ]; then
    if [ -z "${TLSLOAD:-}" ]; then
        TLSLOAD="$dir/tlsload"
        cc -O2 -o "$TLSLOAD" bench/e2e/tlsload.c -lssl -lcrypto -lpthread ||
            { log "cannot build bench/e2e/tlsload.c (cc and libssl-dev: scripts/install-deps)"; exit 2; }
    fi
    mkdir -p "$dir/certs"
    for c in $TLS_CERTS; do
        case $c in
        ecdsa) "$OPENSSL" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
                   -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$dir/certs/$c.key" \
                   -out "$dir/certs/$c.crt" 2>/dev/null ;;
        rsa) "$OPENSSL" req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
                 -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$dir/certs/$c.key" \
                 -out "$dir/certs/$c.crt" 2>/dev/null ;;
        *) log "unknown certificate kind $c (ecdsa, rsa)"; exit 2 ;;
        esac
    done
    for w in $WORKERS; do
        for c in $TLS_CERTS; do
            crt="$dir/certs/$c.crt" key="$dir/certs/$c.key"
            sys_pids=()
            tls_ok=""
            for s in $tls_systems; do
                d="$dir/tls-$s-$w-$c"; mkdir -p "$d/t"; port[$s]=$(free_port)
                if [ $s = wafer ]; then
                    keys=${WAFER_TLS_KEYS//CERT/$crt}; keys=${keys//KEY/$key}
                    wafer_yaml "$w" "127.0.0.1:${port[wafer]}" "$keys" 0 >"$d/wafer.yaml"
                    if ! "$WAFER_BIN" -t -c "$d/wafer.yaml" >"$d/check.log" 2>&1; then
                        log "SKIPPED wafer TLS rows: \`wafer -t\` refuses the tls keys ($(grep -m1 -v '^$' "$d/check.log"))"
                        printf 'wafer\t%s\tTLS %s %s\t1\t\t\t\t\t\t\t\tSKIPPED: this wafer refuses the tls key\n' \
                            "$w" "$c" "keep-alive" >>"$dir/rows"
                        printf 'wafer\t%s\tTLS %s %s\t1\t\t\t\t\t\t\t\tSKIPPED: this wafer refuses the tls key\n' \
                            "$w" "$c" "handshakes" >>"$dir/rows"
                        continue
                    fi
                    $(pin 1) "$WAFER_BIN" run -c "$d/wafer.yaml" 2>"$d/stderr.log" &
                else
                    {
                        nginx_head "$d" "$w"
                        echo "http {"
                        nginx_http_common "$d"
                        echo "    upstream up { server 127.0.0.1:$up_port; keepalive 32; keepalive_requests 1000000; }"
                        echo "    server {"
                        echo "        listen 127.0.0.1:${port[$s]} ssl reuseport backlog=4096;"
                        echo "        ssl_certificate $crt; ssl_certificate_key $key;"
                        echo "        ssl_protocols $TLS_PROTOCOLS; ssl_ciphers $TLS_CIPHERS;"
                        echo "        ssl_conf_command Ciphersuites $TLS13_SUITES;"
                        proxy_location
                        echo "    }"
                        echo "}"
                    } >"$d/nginx.conf"
                    $(pin 1) "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/error.log" &
                fi
                sys_pids+=($!)
                pids+=($!)
                wait_port "${port[$s]}" "$!" || { log "$s (TLS) did not start:"; tail "$d"/*.log >&2; exit 1; }
                # what a client negotiates: protocol and cipher
                echo | "$OPENSSL" s_client -connect "127.0.0.1:${port[$s]}" -servername localhost >"$d/s_client.txt" 2>&1 || true
                neg="$(sed -n 's/^New, \(.*\), Cipher is \(.*\)$/\1 \2/p' "$d/s_client.txt" | head -1) $(
                      sed -n 's/^\(Server \|Peer \)Temp Key: \([^,]*\).*/\2/p' "$d/s_client.txt" | head -1)"
                log "$s TLS ($c, $w workers) negotiates: ${neg:-nothing}"
                echo "$neg" >"$d/negotiated"
                tls_ok="$tls_ok $s"
            done
            for r in $(seq "$ROUNDS"); do
                for s in $tls_systems; do
                    case " $tls_ok " in *" $s "*) ;; *) continue ;; esac
                    url="https://127.0.0.1:${port[$s]}/"
                    wrk_row "$s" "$w" "TLS $c keep-alive" "$r" "$url"
                    hs_row "$s" "$w" "TLS $c handshakes" "$r" "${port[$s]}"
                done
            done
            for s in $tls_ok; do # wrk's rows: what openssl s_client negotiated
                sed -i "/^$s\t$w\tTLS $c keep-alive/s|\t\$|\t$(cat "$dir/tls-$s-$w-$c/negotiated") (s_client)|" "$dir/rows"
            done
            stop_systems
        done
    done
fi

# --- the table -----------------------------------------------------------------------------------------------------
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "wafer: $("$WAFER_BIN" --version 2>&1 | head -1), $waf_mode, model $MODEL; ModSecurity + CRS at PL$PARANOIA$([ "$CRS_ALLOW_ACCEPT_CHARSET" = 1 ] && echo ", Accept-Charset allowed")"
echo "upstream: $UPSTREAM, ${UP_SIZE}-byte 200 response; wrk -t$THREADS -c$CONNS -d${DURATION}s --latency after ${WARMUP}s warm-up, best of $ROUNDS rounds"
part mix && echo "request list: $(cat "$dir/mix.json")"
echo
"$PYTHON" - "$dir" "$SYSTEMS" "$waf_mode" <<'PY'
import json, os, sys
d, systems, waf_mode = sys.argv[1], sys.argv[2].split(), sys.argv[3]
rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(d, "rows")) if l.strip()]
names = {"wafer": "wafer" + ("" if waf_mode.startswith("inspecting") or not waf_mode else " (PLAIN PROXY)"),
         "modsec": "nginx + ModSecurity + CRS", "nginx": "nginx"}
best, nrounds = {}, {}
for r in rows:
    k = (r[0], r[1], r[2])
    nrounds[k] = nrounds.get(k, 0) + 1
    if k not in best or (r[4] and float(r[4]) > float(best[k][4] or 0)):
        best[k] = r
check = {}
for s in systems:
    p = os.path.join(d, "check-%s.json" % s)
    if os.path.exists(p):
        check[s] = json.load(open(p))
print("| system | workers | traffic | req/s | p50 ms | p99 ms | 403 share (under load) | attacks answered 403 | "
      "benign answered 403 | notes |")
print("|---|---|---|---|---|---|---|---|---|---|")
order = {"wafer": 0, "modsec": 1, "nginx": 2}
keys = sorted(best, key=lambda k: (k[2] != "mix", k[2], int(k[1]), order.get(k[0], 9)))
for k in keys:
    r = best[k]
    s, w, t = k
    name = names.get(s, s) if t == "mix" else s  # the TLS rows are plain proxies on both sides
    note = r[11] if len(r) > 11 else ""
    if not r[4]:
        print("| %s | %s | %s | | | | | | | %s |" % (name, w, t, note))
        continue
    n = sum(int(x or 0) for x in (r[7], r[8], r[9]))
    share = "%.2f%%" % (100.0 * int(r[8]) / n) if t == "mix" and n and r[8] != "" else ""
    extra = []
    if r[9] and int(r[9]):
        extra.append("%s other statuses" % r[9])
    if r[10] and int(r[10]):
        extra.append("%s socket errors" % r[10])
    if note:
        extra.append(note)
    cp = os.path.join(d, "counters-%s" % w)
    if t == "mix" and s == "wafer" and os.path.exists(cp):
        c = dict(kv.split("=", 1) for kv in open(cp).read().split())
        if int(c.get("overload_open", 0)) or int(c.get("overload_closed", 0)):
            extra.append("OVERLOAD in the run: %s forwarded uninspected, %s refused with 503 (%s verdict timeouts)" % (
                c.get("overload_open", "0"), c.get("overload_closed", "0"), c.get("verdict_timeouts", "0")))
    att = ben = ""
    if t == "mix" and s in check:
        c = check[s]
        att = "%d/%d (%.1f%%)" % (c["attack_403"], c["attack"], 100.0 * c["attack_403"] / max(c["attack"], 1))
        ben = "%d/%d (%.1f%%)" % (c["benign_403"], c["benign"], 100.0 * c["benign_403"] / max(c["benign"], 1))
        if c["other"] or c["errors"]:
            extra.append("check: other statuses %s, errors %d" % (dict(c["other"]), c["errors"]))
    unit = " handshakes/s" if t.endswith("handshakes") else ""
    print("| %s | %s | %s | %.0f%s | %s | %s | %s | %s | %s | %s |" % (name, w, t, float(r[4]), unit, r[5],
          r[6], share, att, ben, "; ".join(extra)))
print()
for k in keys:
    if k[2] == "mix" and k[0] == "wafer" and best[k][4]:
        w = k[1]
        for other in ("modsec", "nginx"):
            o = best.get((other, w, "mix"))
            if o and o[4] and float(o[4]) > 0:
                print("workers %s: wafer/%s req/s %.2f, p99 %s vs %s ms" % (w, names[other], float(best[k][4]) /
                      float(o[4]), best[k][6], o[6]))
for w in sorted({k[1] for k in keys if k[2] == "mix"}, key=int):
    p = os.path.join(d, "counters-%s" % w)
    if waf_mode.startswith("inspecting") and os.path.exists(p):
        c = dict(kv.split("=", 1) for kv in open(p).read().split())
        print("wafer counters, %s worker(s), whole run: %s" % (w, " ".join("%s=%s" % (k, c.get(k, "0")) for k in (
            "requests", "inspected", "blocked", "overload_open", "overload_closed", "verdict_timeouts",
            "units_extracted", "units_safe", "units_cached", "units_model"))))
for s, c in check.items():
    print("attacks answered 403 by label, %s: %s" % (names.get(s, s), ", ".join(
        "%s %d/%d" % (l, v[1], v[0]) for l, v in c["attack_by_label"].items())))
print("rounds (req/s): " + "; ".join("%s %s %s: %s" % (names.get(k[0], k[0]), k[1], k[2], " ".join(
    "%.0f" % float(r[4]) for r in rows if tuple(r[:3]) == k and r[4])) for k in keys if best[k][4]))
PY
