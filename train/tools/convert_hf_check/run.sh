#!/bin/bash
# Checks train/tools/convert_hf.py end to end where torch and transformers exist (the GPU machine):
# makes tiny random BERT / MobileBERT checkpoints in the Hub layout (pytorch_model.bin; one with old
# LayerNorm.gamma/beta names and an integer buffer), converts them (f32, bf16, f16) with --check, and runs
# `wafer classify` on the results against transformers' probabilities.
#   train/tools/convert_hf_check/run.sh PATH/TO/wafer   (LD_LIBRARY_PATH must find its libraries)
set -u
here=$(cd "$(dirname "$0")" && pwd)
conv=$here/../convert_hf.py
wafer=${1:?usage: run.sh PATH/TO/wafer}
export PYTHONUNBUFFERED=1
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python3 "$here/make_ckpt.py" "$W/src" || exit 1
rc=0
for m in bert mobilebert; do
  python3 "$conv" "$W/src/$m" "$W/out/$m" --check || rc=1
  python3 "$here/compare.py" "$W/src/$m" "$W/out/$m" "$wafer" 1e-4 || rc=1
done
python3 "$conv" "$W/src/mobilebert" "$W/out/mobilebert_bf16" --dtype bf16 --check || rc=1
python3 "$conv" "$W/src/bert" "$W/out/bert_f16" --dtype f16 --name bert-f16 || rc=1
python3 "$here/compare.py" "$W/src/bert" "$W/out/bert_f16" "$wafer" 2e-2 || rc=1
python3 "$conv" "$W/src/bert_legacy" "$W/out/bert_legacy" || rc=1
python3 "$here/compare.py" "$W/src/bert_legacy" "$W/out/bert_legacy" "$wafer" 1e-4 || rc=1
if python3 "$conv" "$W/src/bert" "$W/out/x" --labels a,b 2>/dev/null; then
  echo "FAIL: --labels with the wrong count was accepted"; rc=1
fi
echo "convert_hf check: $([ $rc = 0 ] && echo passed || echo FAILED)"
exit $rc
