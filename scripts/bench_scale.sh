#!/usr/bin/env bash
# Streaming embed, measured: peak memory on generated inputs of 200,000 and 2,000,000 very short
# unique texts (vectors to a dataset folder; the int8 folder, to keep 2 M rows near 20 min on
# 2 cores) — bounded by the window, not the row count — then throughput on the 6,000-text
# benchmark corpus against the in-memory embed of REV (default 51d816d, the last commit before
# streaming), side by side, alternating, fp32. Writes bench-results/scale.md. Needs
# ../shared/data and ~10 GB of disk; about 35 min on 2 cores.
#   bash scripts/bench_scale.sh [REV]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
rev=${1:-51d816d}
rows_big=${ROWS_BIG:-2000000}
shared=${FROSTLINE_SHARED:-$here/../shared}/data
bash scripts/setup.sh >/dev/null
work=$(mktemp -d /tmp/frostline-scale-XXXX)
trap 'for w in old new; do git worktree remove --force "$work/$w" 2>/dev/null || true; done; rm -rf "$work"' EXIT
for which in old new; do
  ref=$rev; [ "$which" = new ] && ref=HEAD
  git worktree add --detach "$work/$which" "$ref" >/dev/null 2>&1
  (cd "$work/$which" && CARGO_TARGET_DIR="$here/target" cargo build --release --quiet)
  cp "$here/target/release/frostline" "$work/frostline-$which"
done
model=$here/models/all-MiniLM-L6-v2

python3 - "$shared" "$work" "$rows_big" <<'PY'
import csv, random, sys
shared, work, big = sys.argv[1], sys.argv[2], int(sys.argv[3])
texts = []
for rel in ["banking77/test.csv", "sst2/test.csv", "goemotions_ekman/test.csv"]:
    with open(f"{shared}/{rel}", encoding="utf-8", newline="") as f:
        texts += [r["text"].replace("\n", " ") for r in csv.DictReader(f)]
open(f"{work}/corpus.txt", "w", encoding="utf-8").write("\n".join(texts[:6000]) + "\n")
# Very short, unique texts (so the cache never serves a repeat): two words and a number.
rng = random.Random(7)
words = "card transfer account balance refund payment blue quick order late fee rate app phone top up cash".split()
with open(f"{work}/big.txt", "w", encoding="utf-8") as f:
    for i in range(big):
        f.write(" ".join(rng.choice(words) for _ in range(2)) + f" {i}\n")
PY
head -n 200000 "$work/big.txt" > "$work/small.txt"

# peak RSS (KiB) and seconds of one embed run: run BIN OUT INPUT [flags...]
run() {
  local bin=$1 out=$2 input=$3
  shift 3
  rm -rf "$work/cache" "$out"
  /usr/bin/time -f '%M %e' -o "$work/time" "$bin" embed --no-progress --json --model "$run_model" \
    --input "$input" --output "$out" --cache-dir "$work/cache" --threads 2 "$@" > "$work/json"
  read -r rss secs < "$work/time"
  local rows
  rows=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rows"])' "$work/json")
  echo "$rss $secs $rows"
}

"$work/frostline-new" quantize --model "$model" --out "$work/int8" >/dev/null
{
  echo "# Streaming embed: memory and throughput ($(nproc) threads)"
} > "$work/report.md"
{
  echo
  echo "## Peak memory (RSS) vs rows — generated texts (two words and a number, ~7 tokens), int8 per-token folder, vectors to a dataset folder"
  echo
  echo "| binary | rows | window rows | peak RSS MiB | seconds | rows/s |"
  echo "|---|---:|---:|---:|---:|---:|"
} >> "$work/report.md"
run_model=$work/int8
line() { # label rows window rss_kib secs
  python3 -c 'import sys; l,r,w,k,s=sys.argv[1:]; print(f"| {l} | {int(r):,} | {w} | {int(k)/1024:.0f} | {float(s):.1f} | {int(r)/float(s):.0f} |")' "$@" >> "$work/report.md"
}
read -r rss secs rows <<< "$(run "$work/frostline-old" "$work/old-small.npy" "$work/small.txt")"
line "in-memory ($rev), .npy" "$rows" "all" "$rss" "$secs"
read -r rss secs rows <<< "$(run "$work/frostline-new" "$work/ds-small/" "$work/small.txt")"
line "streaming (HEAD), dataset" "$rows" 32768 "$rss" "$secs"
read -r rss secs rows <<< "$(run "$work/frostline-new" "$work/ds-big/" "$work/big.txt")"
line "streaming (HEAD), dataset" "$rows" 32768 "$rss" "$secs"
mkdir -p bench-results
cp "$work/report.md" bench-results/scale.md

run_model=$model
{
  echo
  echo "## Throughput on the 6,000-text corpus (Banking77, SST-2, GoEmotions test), fresh cache each run"
  echo
} >> "$work/report.md"
for rep in 1 2 3; do
  for which in old new; do
    read -r _ secs _ <<< "$(run "$work/frostline-$which" "$work/$which.npy" "$work/corpus.txt")"
    echo "$which $secs" >> "$work/corpus-times"
  done
  read -r _ secs _ <<< "$(run "$work/frostline-new" "$work/w.npy" "$work/corpus.txt" --window-rows 1000)"
  echo "new-w1000 $secs" >> "$work/corpus-times"
done
cmp "$work/old.npy" "$work/new.npy" && echo "- vectors: in-memory and streaming .npy outputs byte-identical" >> "$work/report.md"
python3 - "$work/corpus-times" "$rev" >> "$work/report.md" <<'PY'
import statistics, sys
times = {}
for l in open(sys.argv[1]):
    k, s = l.split()
    times.setdefault(k, []).append(float(s))
med = {k: statistics.median(v) for k, v in times.items()}
rev = sys.argv[2]
print(f"- in-memory ({rev}): {6000 / med['old']:.0f} rows/s; streaming (HEAD, one window): {6000 / med['new']:.0f} rows/s "
      f"({100 * (med['old'] / med['new'] - 1):+.1f} %); streaming in windows of 1,000 rows: {6000 / med['new-w1000']:.0f} rows/s "
      f"({100 * (med['old'] / med['new-w1000'] - 1):+.1f} %)  — median of 3 alternating runs, whole process time")
print("- per-run seconds: " + "; ".join(f"{k}: " + ", ".join(f"{s:.2f}" for s in v) for k, v in times.items()))
PY
mkdir -p bench-results
cp "$work/report.md" bench-results/scale.md
cat bench-results/scale.md
