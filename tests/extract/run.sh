#!/bin/sh
# Golden test of `wafer extract`: runs it on each fixture in tests/fixtures/extract
# and compares with the reviewed expected output.
# usage: run.sh WAFER_BINARY FIXTURE_DIR
set -u
wafer=$1
dir=$2
fail=0
check() { # format input expected [args...]
    fmt=$1 in=$2 exp=$3
    shift 3
    out=$("$wafer" extract --format "$fmt" "$@" "$dir/$in")
    rc=$?
    if [ $rc -ne 0 ]; then
        echo "FAIL $in: exit $rc"
        fail=1
    elif ! printf '%s\n' "$out" | diff -u "$dir/$exp" - ; then
        echo "FAIL $in ($*)"
        fail=1
    fi
}
check raw requests.raw requests.raw.expected --all
check raw requests.raw requests.raw.json.expected --json
check lines payloads.lines payloads.lines.expected --all --name q --name search
check jsonl requests.jsonl requests.jsonl.expected --all
check nginx access.log access.log.expected --all
# reading standard input, and numbering that continues across files
out=$("$wafer" extract --all --format lines - "$dir/payloads.lines" < "$dir/payloads.lines" | cut -f1 | tail -n 1)
[ "$out" = "11" ] || { echo "FAIL stdin + file numbering: last index '$out'"; fail=1; }
# errors: unknown format, missing file -> exit 2
"$wafer" extract --format nope "$dir/payloads.lines" >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL bad format exit"; fail=1; }
"$wafer" extract "$dir/does-not-exist" >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL missing file exit"; fail=1; }
[ $fail -eq 0 ] && echo "extract golden: ok"
exit $fail
