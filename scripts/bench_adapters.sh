#!/usr/bin/env bash
# BitFit and LoRA above the frost line vs full layers vs the frozen backbone, on Banking77,
# GoEmotions-Ekman and WNUT-17. Writes bench-results/adapters.md (or --out). Needs ../shared/data;
# ~25 min on 2 cores.
#   bash scripts/bench_adapters.sh [--frost-line 4] [--skip WNUT-17] [--warm-start --out bench-results/adapters_warm.md]
source "$(dirname "$0")/bench_prelude.sh"
"$venv/bin/python" scripts/bench_adapters.py --frostline target/release/frostline \
  --model models/all-MiniLM-L6-v2 --shared "$shared" --out bench-results/adapters.md "$@"
