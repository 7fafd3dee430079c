#!/usr/bin/env bash
# The main job on the embedded default: set up what is missing, build, then embed the shipped
# Banking77 and SST-2 subsets (data/) with all-MiniLM-L6-v2 through the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet
out=${FROSTLINE_DEMO_OUT:-demo-output}
mkdir -p "$out"
bin=target/release/frostline
"$bin" doctor
for split in banking77/train banking77/test sst2/train sst2/dev sst2/test; do
  echo "== embed data/$split.csv"
  "$bin" embed --input "data/$split.csv" --output "$out/${split//\//_}.parquet"
done
