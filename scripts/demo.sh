#!/usr/bin/env bash
# The main job on the embedded default: set up what is missing (venv, ONNX export), build, then
# train Task A (Banking77 intents) and Task B (SST-2 sentiment) heads on the frozen
# all-MiniLM-L6-v2 backbone from the subsets in data/, evaluate on their test splits, print the
# per-task table, and predict a few new sentences with the checkpoint. Then NER as Task B
# (runs/ner.toml: WNUT-17 entities beside the intents) and the entities of two new sentences.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet
out=${FROSTLINE_DEMO_OUT:-demo-output}
mkdir -p "$out"
bin=target/release/frostline
"$bin" train --run runs/default.toml --out "$out/checkpoint"
printf 'text\n"I still have not received my new card, when will it arrive?"\n"A warm, funny and beautifully acted film."\nThe plot is a mess and the jokes fall flat.\n' > "$out/new.csv"
"$bin" predict --checkpoint "$out/checkpoint" --input "$out/new.csv" --output "$out/predictions.csv" --no-progress 2>/dev/null
echo "predictions ($out/predictions.csv):"
cat "$out/predictions.csv"

"$bin" train --run runs/ner.toml --out "$out/checkpoint-ner"
printf 'text\n"Justin Bieber and Taylor Swift posted from Los Angeles, on Instagram!"\nI lost my Monzo card in Berlin yesterday.\n' > "$out/new-ner.csv"
"$bin" predict --checkpoint "$out/checkpoint-ner" --input "$out/new-ner.csv" --output "$out/predictions-ner.csv" --no-progress 2>/dev/null
echo "predictions with entities ($out/predictions-ner.csv):"
cat "$out/predictions-ner.csv"
