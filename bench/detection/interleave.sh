#!/bin/sh
# Throughput per core, interleaved: ModSecurity + CRS PL1 (as shipped, and with Accept-Charset allowed) and
# `wafer scan` (one thread, CPU backend) on the same requests, one after the other in each round, so that the
# machine's load affects each round's engines alike; prints each round's requests/s and wafer's ratio to the
# faster CRS configuration of that round (docs/benchmarks.md "Detection: wafer vs ModSecurity + CRS").
#
#   bench/detection/interleave.sh TIMED.jsonl [ROUNDS]
#
# TIMED.jsonl: requests in bench/detection's JSON-lines form (run.sh writes the first --timed of its sample to
# OUT/timed.jsonl). Environment: WAFER_BIN (build/wafer), MODEL (models/default), MODSEC_EVAL
# (build/bench/detection/modsec_eval), WAFER_SCAN_ARGS (--backend cpu --threads 1), BOTH (1: also wafer with
# WAFER_CPU_LAST_LAYER=all, the last layer over every token, in each round).
set -eu
cd "$(dirname "$0")/../.."
timed=$1 rounds=${2:-5}
wafer=${WAFER_BIN:-build/wafer} model=${MODEL:-models/default} msc=${MODSEC_EVAL:-build/bench/detection/modsec_eval}
args=${WAFER_SCAN_ARGS:---backend cpu --threads 1}
n=$(wc -l <"$timed")
crs() { "$msc" -p 1 "$@" -T "$n" -R 1 "$timed" 2>&1 >/dev/null | sed -n 's/.* \([0-9.]*\) timed requests\/s.*/\1/p'; }
scan() { "$wafer" scan -m "$model" $args --format jsonl --output summary "$timed" 2>/dev/null |
         awk '/^requests:/ {n=$2} /^seconds:/ {printf "%.0f", n/$2}'; }
echo "round | CRS PL1 | CRS PL1, Accept-Charset allowed | wafer | wafer / best CRS PL1${BOTH:+ | wafer, last layer over every token}"
for r in $(seq "$rounds"); do
    a=$(crs)
    b=$(crs -H "/content-encoding/ /proxy/ /lock-token/ /content-range/ /if/")
    w=$(scan)
    extra=""
    [ "${BOTH:-}" = 1 ] && extra=" | $(WAFER_CPU_LAST_LAYER=all scan)"
    echo "$r | $a | $b | $w | $(awk -v w="$w" -v a="$a" -v b="$b" 'BEGIN {m = a > b ? a : b; printf "%.1fx", w / m}')$extra"
done
