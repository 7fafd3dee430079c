#!/usr/bin/env bash
# The AMX bf16 kernel vs AVX512-BF16 and fp32: GFLOP/s per layer product, and the contrastive
# stage of a few-shot run (SST-2, k = 8). Needs a CPU with AMX-BF16 (stops and says so
# otherwise) and ../shared/data. Prints the CPU model and flags first. Writes
# bench-results/amx.md. About 5 min on 2 cores.
source "$(dirname "$0")/bench_prelude.sh"
grep -m1 "model name" /proc/cpuinfo
work=${WORK:-$(mktemp -d)}
"$venv/bin/python" scripts/bench_amx.py --frostline target/release/frostline \
  --model models/all-MiniLM-L6-v2 --shared "$shared" --work "$work" \
  --out bench-results/amx.md "$@"
