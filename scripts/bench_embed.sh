#!/usr/bin/env bash
# Embedding benchmark: frostline vs sentence-transformers (torch CPU) vs naive Python ORT.
# Writes bench-results/embed.md. Needs ../shared/data.
source "$(dirname "$0")/bench_prelude.sh"
"$venv/bin/python" scripts/bench_embed.py --frostline target/release/frostline \
  --model models/all-MiniLM-L6-v2 --st-model "$st_model" --shared "$shared" \
  --texts "${TEXTS:-6000}" --reps "${REPS:-3}" --threads "${THREADS:-2}" --out bench-results/embed.md
