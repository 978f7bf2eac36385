#!/bin/sh
# Retrain wafer's default detection model reproducibly (see train/README.md).
#
#   train/retrain.sh prepare            here: splits (data.py) and units (build_units.py, through ./build/wafer extract)
#   train/retrain.sh train [CONFIGS]    on the GPU machine, from the repository root, with .devwork/train carried:
#                                       trains into $OUT/train (default config: the shipped one; "all" = the sweep)
#   train/retrain.sh finish DIR         here: DIR = the fetched train output; installs DIR/models/<config> as
#                                       models/default, calibrates thresholds with wafer on the validation split,
#                                       evaluates on the test split (wafer scan), checks parity with PyTorch and
#                                       redraws tests/fixtures/detection/sample.jsonl
#
# Environment: DATA (the data sets, default ../shared/datasets), WORK (default .devwork/train), WAFER (./build/wafer).
set -eu
DATA=${DATA:-../shared/datasets}
WORK=${WORK:-.devwork/train}
WAFER=${WAFER:-./build/wafer}
DEFAULT_CONFIG=wp-l2-h128-ml128-e8-ls
NAME=wafer-default-2026.11-r2
cmd=${1:-}
case "$cmd" in
prepare)
    [ -x "$WAFER" ] || { echo "retrain: build wafer first (./scripts/build)" >&2; exit 2; }
    mkdir -p "$WORK"
    python3 train/data.py --data "$DATA" --out "$WORK/splits"
    python3 train/build_units.py --wafer "$WAFER" --splits "$WORK/splits" --out "$WORK/units"
    cp train/train.py train/calib.py "$WORK/"
    du -sh "$WORK/units"
    ;;
train)
    configs=${2:-$DEFAULT_CONFIG}
    [ "$configs" = all ] && configs=wp-l2-h128-ml128-e8,wp-l2-h128,wp-l2-h256,wp16k-l2-h128-ml128-e8,wp-l2-h128-ml128-e8-ls,wp-l2-h128-e12
    out=${OUT:-/tmp/wafer-train}
    mkdir -p "$out/train"
    python3 "$WORK/train.py" --units "$WORK/units" --out "$out/train" --configs "$configs" --name "$NAME" \
        2>&1 | tee "$out/train/train.log"
    (cd "$out/train" && tar cJf "$out/results.tar.xz" sweep.json chosen.txt train.log test_pred_*.jsonl parity_*.jsonl)
    for m in "$out"/train/models/*; do tar cf "$out/model_$(basename "$m").tar" -C "$out/train/models" "$(basename "$m")"; done
    ;;
finish)
    src=${2:?usage: retrain.sh finish DIR}
    config=${3:-$DEFAULT_CONFIG}
    mkdir -p models/default
    for f in config.json model.safetensors vocab.txt wafer.json; do cp "$src/models/$config/$f" models/default/; done
    python3 - "$NAME" <<'PY'
import json, sys
p = "models/default/wafer.json"
m = json.load(open(p))
m["name"] = sys.argv[1]
with open(p, "w") as f:
    json.dump(m, f, indent=2)
    f.write("\n")
PY
    python3 train/evaluate.py --wafer "$WAFER" --model models/default --units "$WORK/units" --splits "$WORK/splits" \
        --calibrate --out "$WORK/eval"
    python3 train/check_wafer.py --wafer "$WAFER" --model models/default --parity "$src/parity_$config.jsonl"
    python3 train/make_sample.py --split "$WORK/splits/test.jsonl" --pred "$WORK/eval/test_pred.jsonl" \
        --out tests/fixtures/detection/sample.jsonl
    echo "now update models/default/MODEL_CARD.md from $WORK/eval/report.json"
    ;;
*)
    sed -n '2,14p' "$0"
    exit 2
    ;;
esac
