#!/usr/bin/env bash
# Heads benchmark: accuracy vs scikit-learn, MTEB replay, training speed vs PyTorch, cache read.
# Writes bench-results/heads.md and bench-results/cache_read.md. Needs ../shared/data and the
# benchmark venv (scripts/bench_venv.sh, torch + scikit-learn; the default set-up never needs it).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh >/dev/null
venv=$(bash scripts/bench_venv.sh | tail -n 1)
cargo build --release --quiet
"$venv/bin/python" scripts/bench_heads.py --frostline target/release/frostline \
  --model models/all-MiniLM-L6-v2 --shared "${FROSTLINE_SHARED:-$here/../shared}" \
  --reps "${REPS:-3}" --threads "${THREADS:-2}" --out bench-results/heads.md
cargo bench --quiet --bench cache_read -- bench-results/cache_read.md
