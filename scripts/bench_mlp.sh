#!/usr/bin/env bash
# The MLP head on frozen vectors vs scikit-learn's MLPClassifier (Banking77, SST-2,
# GoEmotions-Ekman, full splits), and the sweep on dev that chose the MLP's defaults. Prints the
# CPU model and flags first. Writes bench-results/mlp.md. Needs ../shared/data; ~15 min on 2 cores.
source "$(dirname "$0")/bench_prelude.sh"
grep -m1 "model name" /proc/cpuinfo
work=${WORK:-$(mktemp -d)}
"$venv/bin/python" scripts/bench_mlp.py --frostline target/release/frostline \
  --model models/all-MiniLM-L6-v2 --shared "$shared" --work "$work" \
  --out bench-results/mlp.md "$@"
