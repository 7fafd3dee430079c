#!/usr/bin/env bash
# MTEB replay on SST-2 (binary), frostline vs scikit-learn per experiment.
# Writes bench-results/mteb_sst2.md. Needs ../shared/data.
source "$(dirname "$0")/bench_prelude.sh"
work=${WORK:-$(mktemp -d)}
"$venv/bin/python" scripts/bench_mteb_binary.py --frostline target/release/frostline \
  --model models/all-MiniLM-L6-v2 --shared "$shared" --work "$work" --out bench-results/mteb_sst2.md
