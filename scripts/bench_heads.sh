#!/usr/bin/env bash
# Heads benchmark: accuracy vs scikit-learn, MTEB replay, training speed vs PyTorch, cache read.
# Writes bench-results/heads.md and bench-results/cache_read.md. Needs ../shared/data.
source "$(dirname "$0")/bench_prelude.sh"
"$venv/bin/python" scripts/bench_heads.py --frostline target/release/frostline \
  --model models/all-MiniLM-L6-v2 --shared "$shared" \
  --reps "${REPS:-3}" --threads "${THREADS:-2}" --out bench-results/heads.md
cargo bench --quiet --bench cache_read -- bench-results/cache_read.md
