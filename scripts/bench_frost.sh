#!/usr/bin/env bash
# Frost-line benchmark: frostline frost-line=N vs frozen backbone vs PyTorch fine-tuning the same
# layers. Writes bench-results/frost.md (or --out). Needs ../shared/data; ~15 min on 2 cores.
#   bash scripts/bench_frost.sh [--warm-start --out bench-results/frost_warm.md]
source "$(dirname "$0")/bench_prelude.sh"
"$venv/bin/python" scripts/bench_frost.py --frostline target/release/frostline \
  --model models/all-MiniLM-L6-v2 --st-model "$st_model" --shared "$shared" \
  --threads "${THREADS:-2}" --out bench-results/frost.md "$@"
