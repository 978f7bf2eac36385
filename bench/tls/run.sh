#!/bin/sh
# TLS termination: wafer against nginx, same certificate, same protocols and ciphers, same plain upstream (an
# nginx answering "ok"), one worker each, on one machine. Prints requests/s over keep-alive TLS connections,
# requests/s with a new TLS connection per request (wrk, "Connection: close"; wrk resumes the session on about half
# of its new connections), and full and resumed handshakes/s (openssl s_time -new / -reuse, PAR clients at once).
#
#   bench/tls/run.sh [WAFER_BIN]   environment: SECONDS_EACH (10), CONNS (64), THREADS (2), PAR (4 s_time
#                                  clients at once), PORT0 (18440)
#
# Needs nginx (nginx-light), wrk and openssl. Everything it starts is stopped at exit.
set -eu
W=$(readlink -f "${1:-build/wafer}")
T=${SECONDS_EACH:-10}
C=${CONNS:-64}
TH=${THREADS:-2}
PAR=${PAR:-4}
P0=${PORT0:-18440}
UP=$P0 WP=$((P0 + 1)) NP=$((P0 + 2))
D=$(mktemp -d /tmp/wafer-tlsbench-XXXXXX)
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    rm -rf "$D"
}
trap cleanup EXIT INT TERM

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$D/key.pem" -out "$D/cert.pem" \
    -days 2 -subj /CN=bench.test -addext subjectAltName=DNS:bench.test 2>/dev/null
CIPHERS="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
CIPHERS="$CIPHERS:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
mkdir -p "$D/up" "$D/ng"
cat > "$D/up/nginx.conf" <<EOF
daemon off; worker_processes 1; pid $D/up/pid; error_log $D/up/err.log;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP reuseport backlog=4096; location / { return 200 "ok\n"; } } }
EOF
cat > "$D/ng/nginx.conf" <<EOF
daemon off; worker_processes 1; pid $D/ng/pid; error_log $D/ng/err.log;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$UP; keepalive 32; }
  server { listen 127.0.0.1:$NP ssl reuseport backlog=4096;
    ssl_certificate $D/cert.pem; ssl_certificate_key $D/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_ciphers $CIPHERS; ssl_prefer_server_ciphers off;
    ssl_session_cache shared:SSL:10m; ssl_session_tickets on; ssl_session_timeout 1h;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
cat > "$D/wafer.yaml" <<EOF
workers: 1
pid_file: ""
log: {level: warn, access_log: "off"}
listen:
  - address: 127.0.0.1:$WP
    backlog: 4096
    tls:
      certificates: [{cert: $D/cert.pem, key: $D/key.pem}]
      protocols: [TLSv1.2, TLSv1.3]
      ciphers: "$CIPHERS"
      session_cache: 20000
      session_timeout: 1h
upstream: {servers: [{address: 127.0.0.1:$UP}], keepalive: 32}
limits: {max_connections: 8192}
admin: {enabled: false}
EOF
nginx -p "$D/up" -c "$D/up/nginx.conf" -e "$D/up/err.log" & PIDS="$PIDS $!"
nginx -p "$D/ng" -c "$D/ng/nginx.conf" -e "$D/ng/err.log" & PIDS="$PIDS $!"
"$W" run -c "$D/wafer.yaml" 2> "$D/wafer.err" & PIDS="$PIDS $!"
sleep 1
for p in $WP $NP; do curl -sk --max-time 5 "https://127.0.0.1:$p/" >/dev/null || { echo "port $p not serving"; exit 1; }; done

rps() { wrk -t"$TH" -c"$C" -d"${T}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
# handshakes/s: PAR s_time clients at once (each one connection at a time), summed
stime() {
    i=0
    while [ $i -lt "$PAR" ]; do
        openssl s_time -connect "127.0.0.1:$1" "$2" -time "$T" > "$D/st.$i" 2>/dev/null &
        i=$((i + 1))
    done
    wait
    cat "$D"/st.* | awk '/real seconds/ {s += $1 / $4} END {printf "%.0f", s}'
    rm -f "$D"/st.*
}

printf "%-34s %12s %12s\n" "TLS ($T s each, $C conns, $TH wrk threads)" wafer nginx
printf "%-34s %12s %12s\n" "requests/s, keep-alive" "$(rps "https://127.0.0.1:$WP/")" "$(rps "https://127.0.0.1:$NP/")"
printf "%-34s %12s %12s\n" "requests/s, new connection each*" "$(rps -H 'Connection: close' "https://127.0.0.1:$WP/")" \
    "$(rps -H 'Connection: close' "https://127.0.0.1:$NP/")"
printf "%-34s %12s %12s\n" "full handshakes/s (s_time -new)" "$(stime $WP -new)" "$(stime $NP -new)"
printf "%-34s %12s %12s\n" "resumed handshakes/s (s_time -reuse)" "$(stime $WP -reuse)" "$(stime $NP -reuse)"
echo "* wrk resumes the TLS session on part of its new connections"
