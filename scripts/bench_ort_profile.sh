#!/usr/bin/env bash
# Where ONNX Runtime's time goes in frostline's fused fp32 and int8 graphs (ORT's profiler, op by
# op), short texts and long documents; the fp32 ceiling if only the weight products took time.
# Writes bench-results/ort_profile.md. Needs ../shared/data; a few minutes on 2 cores.
source "$(dirname "$0")/bench_prelude.sh"
int8=$(mktemp -d)/int8
target/release/frostline quantize --model models/all-MiniLM-L6-v2 --out "$int8" >/dev/null
"$venv/bin/python" scripts/bench_ort_profile.py --model models/all-MiniLM-L6-v2 --int8 "$int8" \
  --shared "$shared" --texts "${TEXTS:-6000}" --threads "${THREADS:-2}" --out bench-results/ort_profile.md "$@"
rm -rf "$(dirname "$int8")"
