#!/usr/bin/env bash
# int8 benchmark: throughput (int8 vs fp32 frostline vs sentence-transformers), per-text agreement
# for every recipe, downstream heads on the full Banking77 / SST-2 / GoEmotions-Ekman sets, MTEB
# Banking77 k = 8 and the frost line with an int8 frozen part. Writes bench-results/int8.md.
# Needs ../shared/data; about 25 min on 2 cores.
source "$(dirname "$0")/bench_prelude.sh"
"$venv/bin/python" scripts/bench_int8.py --frostline target/release/frostline \
  --model models/all-MiniLM-L6-v2 --st-model "$st_model" --shared "$shared" \
  --texts "${TEXTS:-6000}" --reps "${REPS:-3}" --threads "${THREADS:-2}" --out bench-results/int8.md "$@"
