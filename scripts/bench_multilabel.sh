#!/usr/bin/env bash
# Multi-label benchmark (GoEmotions): frostline frozen backbone and frost line vs scikit-learn
# one-vs-rest logistic regression on the same cached embeddings. Writes bench-results/multilabel.md.
# Needs ../shared/data.
source "$(dirname "$0")/bench_prelude.sh"
work=${WORK:-$(mktemp -d)}
"$venv/bin/python" scripts/bench_multilabel.py --frostline target/release/frostline \
  --model models/all-MiniLM-L6-v2 --shared "$shared" --work "$work" \
  --frost-epochs "${FROST_EPOCHS:-2}" --out bench-results/multilabel.md
