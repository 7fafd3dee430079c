#!/usr/bin/env bash
# Where ONNX Runtime's time goes in frostline's fused fp32 and int8 graphs (ORT's profiler, op by
# op), short texts and long documents; the fp32 ceiling if only the weight products took time.
# Writes bench-results/ort_profile.md. Needs ../shared/data; a few minutes on 2 cores.
source "$(dirname "$0")/bench_prelude.sh"
int8=$(mktemp -d)/int8
target/release/frostline quantize --model models/all-MiniLM-L6-v2 --out "$int8" >/dev/null
# The same recipe on ONNX Runtime's ops alone (the graph export --with-heads writes).
"$venv/bin/python" scripts/quantize_onnx.py --method per-token --input models/all-MiniLM-L6-v2/model.onnx \
  --output "$int8.portable.onnx" >/dev/null
"$venv/bin/python" scripts/bench_ort_profile.py --frostline target/release/frostline \
  --model models/all-MiniLM-L6-v2 --int8 "$int8" --portable "$int8.portable.onnx" --shared "$shared" --texts "${TEXTS:-6000}" --threads "${THREADS:-2}" --out bench-results/ort_profile.md "$@"
rm -rf "$(dirname "$int8")"
