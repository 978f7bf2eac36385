#!/bin/sh
# Detection benchmark: wafer's default model against ModSecurity v3 + OWASP CRS at paranoia levels 1-4, on the
# same fixed sample of the held-out test split; prints one table (docs/benchmarks.md "Detection: wafer vs
# ModSecurity + CRS").
#
#   bench/detection/run.sh [--split DIR] [--data DIR] [--model DIR] [--out DIR] [--levels "1 2 3 4"]
#                          [--tuned-levels "1 2 3 4"] [--per-class N] [--benign N] [--unlabelled N] [--build DIR]
#                          [--reuse DIR] [--timed N] [--rounds R]
#
# --split   a folder with test.jsonl (train/data.py's output); built into --out from --data when not given
# --data    the data sets (default ../shared/datasets)
# --model   wafer's model directory (default models/default); wafer's rows are left out when it is missing
# --levels  CRS paranoia levels run with Debian's crs-setup.conf as shipped
# --tuned-levels  levels run again with Accept-Charset taken off CRS's restricted_headers (rule 900250; every CSIC
#           2010 request carries that header, which CRS 3.3.4 blocks by default); "" to skip
# --out     where the sample, every engine's per-request results and the report go (default: a new temp dir)
# sample    up to --per-class (1000) requests per attack class, --benign (10000) benign, --unlabelled (2000)
#           CSIC 2010 anomalous; bench/detection/sample.py says how they are picked
# --reuse   an earlier --out folder: ModSecurity's results there are taken instead of run again when its sample
#           is byte for byte this one (to add wafer's row to a ModSecurity run without repeating it)
# --timed, --rounds  throughput per core: the first N (2000) requests of the sample, R (3) rounds, the best
#           round (the build machine is shared); the single pass over the whole sample is reported too
# WAFER_SCAN_ARGS  extra arguments for `wafer scan` (default: --backend cpu --threads 1)
#
# Installs Debian's libmodsecurity-dev and modsecurity-crs when they are missing (the bench needs them; wafer
# does not) and builds bench/detection/modsec_eval into the build folder. Everything runs on one thread, one
# engine at a time: requests/s are per core.
set -eu
cd "$(dirname "$0")/../.."
root=$(pwd)
split="" data="../shared/datasets" model="models/default" out="" levels="1 2 3 4" tuned="1 2 3 4"
per_class=1000 benign=10000 unlabelled=2000 build=build reuse="" timed=2000 rounds=3
PY=${PYTHON:-/usr/bin/python3}
while [ $# -gt 0 ]; do
    case "$1" in
    --split) split=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --levels) levels=$2; shift 2 ;;
    --tuned-levels) tuned=$2; shift 2 ;;
    --per-class) per_class=$2; shift 2 ;;
    --benign) benign=$2; shift 2 ;;
    --unlabelled) unlabelled=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --reuse) reuse=$2; shift 2 ;;
    --timed) timed=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$out" ] || out=$(mktemp -d /tmp/wafer-detection.XXXXXX)
mkdir -p "$out"
log() { echo "run.sh: $*" >&2; }

# ModSecurity and the CRS: Debian's packages, only for this benchmark.
missing=""
for p in libmodsecurity-dev modsecurity-crs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    log "installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
modsec="$build/bench/detection/modsec_eval"
if [ ! -x "$modsec" ] || [ bench/detection/modsec_eval.c -nt "$modsec" ]; then
    cmake -S . -B "$build" >/dev/null # again: modsec_eval is configured only where libmodsecurity is found
    cmake --build "$build" -j2 --target modsec_eval wafer >/dev/null
fi
wafer="$build/wafer"

# The split and the sample.
if [ -z "$split" ]; then
    split="$out/split"
    log "building the split into $split"
    "$PY" train/data.py --data "$data" --out "$split" >"$out/split.log"
fi
"$PY" bench/detection/sample.py --test "$split/test.jsonl" --out "$out/sample.jsonl" --per-class "$per_class" \
    --benign "$benign" --unlabelled "$unlabelled" 2>"$out/sample.json"
n=$(wc -l <"$out/sample.jsonl")
log "sample: $n requests ($out/sample.json)"

engines="$out/engines.json"
echo "[" >"$engines"
sep=""

# wafer: the same sample through `wafer scan`, one thread. Throughput per core: the first $timed requests of the
# sample, $rounds rounds, the best round, each timed by scan itself (its summary's "seconds": from the scan's start,
# model already loaded, to the last verdict: reading, parsing, extraction, inference).
if [ -f "$model/wafer.json" ] && "$wafer" scan --help >/dev/null 2>&1; then
    args=${WAFER_SCAN_ARGS:---backend cpu --threads 1}
    head -n "$timed" "$out/sample.jsonl" >"$out/timed.jsonl"
    rc=0 # exit status 1 only says that something was found
    "$wafer" scan -m "$model" $args --format jsonl --output jsonl "$out/sample.jsonl" >"$out/wafer.jsonl" \
        2>"$out/wafer.err" || rc=$?
    if [ "$rc" -le 1 ]; then
        "$wafer" scan -m "$model" $args --format jsonl --output summary "$out/sample.jsonl" >"$out/wafer_summary.txt" \
            2>/dev/null || true
        : >"$out/wafer_timed.txt"
        for r in $(seq "$rounds"); do
            "$wafer" scan -m "$model" $args --format jsonl --output summary "$out/timed.jsonl" >>"$out/wafer_timed.txt" \
                2>/dev/null || true
        done
        rps=$(awk '/^requests:/ {n=$2} /^seconds:/ {r=n/$2; if (r>b) b=r} END {printf "%.1f", b}' "$out/wafer_timed.txt")
        pass=$(awk '/^requests:/ {n=$2} /^seconds:/ {printf "%.1f", n/$2}' "$out/wafer_summary.txt")
        log "wafer scan: $n requests, $pass requests/s in one pass; best of $rounds rounds over $timed: $rps requests/s"
        printf '%s{"name": "wafer (%s)", "kind": "wafer", "results": "%s", "rps": %s, "rps_pass": %s}\n' "$sep" \
            "$model" "$out/wafer.jsonl" "$rps" "$pass" >>"$engines"
        sep=","
    else
        log "wafer scan failed (exit $rc), see $out/wafer.err; wafer's row is left out"
    fi
else
    log "no model at $model (wafer.json) or no \`wafer scan\`: wafer's row is left out"
fi

# ModSecurity + CRS, one paranoia level at a time: as shipped, then with Accept-Charset allowed.
modsec_run() { # name suffix, file tag, modsec_eval arguments...
    name=$1 tag=$2
    shift 2
    if [ -n "$reuse" ] && [ -f "$reuse/modsec_$tag.err" ] && cmp -s "$reuse/sample.jsonl" "$out/sample.jsonl"; then
        log "ModSecurity $name: results of $reuse (same sample)"
        cp "$reuse/modsec_$tag.jsonl" "$reuse/modsec_$tag.err" "$out/"
    else
        "$modsec" -T "$timed" -R "$rounds" "$@" "$out/sample.jsonl" >"$out/modsec_$tag.jsonl" 2>"$out/modsec_$tag.err"
    fi
    cat "$out/modsec_$tag.err" >&2
    pass=$(sed -n 's/.* \([0-9.]*\) requests\/s (one thread).*/\1/p' "$out/modsec_$tag.err")
    rps=$(sed -n 's/.* \([0-9.]*\) timed requests\/s.*/\1/p' "$out/modsec_$tag.err")
    printf '%s{"name": "ModSecurity 3.0.9 + CRS 3.3.4 %s", "kind": "modsec", "results": "%s", "rps": %s, "rps_pass": %s}\n' \
        "$sep" "$name" "$out/modsec_$tag.jsonl" "$rps" "$pass" >>"$engines"
    sep=","
}
for pl in $levels; do
    modsec_run "PL$pl" "pl$pl" -p "$pl"
done
for pl in $tuned; do
    modsec_run "PL$pl, Accept-Charset allowed" "pl${pl}_ac" -p "$pl" \
        -H "/content-encoding/ /proxy/ /lock-token/ /content-range/ /if/"
done
echo "]" >>"$engines"

"$PY" bench/detection/report.py --sample "$out/sample.jsonl" --engines "$engines" --json "$out/report.json" \
    | tee "$out/report.md"
log "results in $out"
