#!/usr/bin/env bash
# The native engine vs PyTorch: GFLOP/s of the layer products, time per epoch and accuracy in
# fp32 and bf16 (WNUT-17 frost line 3 read at 6, Banking77 frost-line=0). Prints the CPU model
# and flags first. Writes bench-results/engine.md. Needs ../shared/data; ~30 min on 2 cores.
source "$(dirname "$0")/bench_prelude.sh"
"$venv/bin/python" -c 'import seqeval' 2>/dev/null ||
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check seqeval
grep -m1 "model name" /proc/cpuinfo
work=${WORK:-$(mktemp -d)}
"$venv/bin/python" scripts/bench_engine.py --frostline target/release/frostline \
  --model models/all-MiniLM-L6-v2 --st-model "$st_model" --shared "$shared" --work "$work" \
  --threads "${THREADS:-2}" --out bench-results/engine.md "$@"
