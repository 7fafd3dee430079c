#!/usr/bin/env bash
# export --with-heads on full test sets: frostline predict vs scripts/predict_onnx.py (ONNX
# Runtime alone) for a classification (Banking77), a multi-label (GoEmotions, 28 labels) and a
# token task (WNUT-17, its own LoRA adapter), fp32 and int8 below the frost line. Writes
# bench-results/served.md (or --out). Needs ../shared/data; ~15 min on 2 cores.
#   bash scripts/bench_served.sh [--train-rows 3000]
source "$(dirname "$0")/bench_prelude.sh"
"$venv/bin/python" scripts/bench_served.py --frostline target/release/frostline \
  --model models/all-MiniLM-L6-v2 --shared "$shared" --out bench-results/served.md \
  --served-python "${FROSTLINE_VENV:-$HOME/.cache/frostline/venv}/bin/python" "$@"
