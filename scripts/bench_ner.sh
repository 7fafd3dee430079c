#!/usr/bin/env bash
# NER benchmark (WNUT-17): frostline's frozen token head at every layer vs scikit-learn on the
# same cached word features, and the frost line vs a PyTorch fine-tune of the same layers.
# Writes bench-results/ner.md. Needs ../shared/data.
source "$(dirname "$0")/bench_prelude.sh"
"$venv/bin/python" -c 'import seqeval' 2>/dev/null ||
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check seqeval
work=${WORK:-$(mktemp -d)}
"$venv/bin/python" scripts/bench_ner.py --frostline target/release/frostline \
  --model models/all-MiniLM-L6-v2 --shared "$shared" --work "$work" \
  --frost-line "${FROST_LINE:-3}" --frost-epochs "${FROST_EPOCHS:-4}" --out bench-results/ner.md
