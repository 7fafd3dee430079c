#!/usr/bin/env bash
# Few-shot (k rows per label): frostline's frozen head and contrastive regimes vs SetFit 1.2 and a
# frozen body + scikit-learn LogisticRegression, on the rows `frostline fewshot` drew with each
# seed. SST-2 k = 8 and 16 (10 seeds), Banking77 and GoEmotions-Ekman k = 8 (3 seeds). Prints the
# CPU model and flags first. Writes bench-results/fewshot.md (+ .json). Needs ../shared/data;
# about 90 min on 2 cores, most of it SetFit on Banking77.
source "$(dirname "$0")/bench_prelude.sh"
grep -m1 "model name" /proc/cpuinfo
work=${WORK:-$(mktemp -d)}
"$venv/bin/python" scripts/bench_fewshot.py --frostline target/release/frostline \
  --model models/all-MiniLM-L6-v2 --st-model "$st_model" --shared "$shared" --work "$work" \
  --threads "$(nproc)" --out bench-results/fewshot.md "$@"
