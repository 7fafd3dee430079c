#!/usr/bin/env bash
# Heads accuracy before vs after a change, side by side in one run: builds REV (default
# HEAD~1) and NEW (default HEAD) in temporary worktrees (sharing target/'s compiled
# dependencies; uncommitted changes are not measured), then trains the four
# heads variants of bench_heads.py (frozen-backbone linear and MLP, fully-frozen centroid and
# zero-shot) on the full ../shared sets (Banking77, SST-2, GoEmotions-Ekman), plus a frost-line
# run (layer 5 up, max length 64, 3 epochs) on full SST-2, a multi-label run (GoEmotions, 28
# labels, per-label thresholds) and an NER run (WNUT-17, frost line 5, 2 epochs), with both
# binaries on one cache, and writes bench-results/heads_parity.md. Needs no torch.
# PARITY_WORK=DIR keeps the work folder, and a side already finished there (DIR/old.done,
# DIR/new.done) is not built or trained again: the "before" side of a long refactor can be run
# at its start (PARITY_SIDES=old) and the "after" side at its end.
#   bash scripts/bench_parity.sh [REV] [OUT] [NEW]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
rev=${1:-HEAD~1}
out=${2:-bench-results/heads_parity.md}
new=${3:-HEAD}
# Resolved now: HEAD may move (a commit) while the sides train.
rev_id=$(git rev-parse --short "$rev")
new_id=$(git rev-parse --short "$new")
shared=${FROSTLINE_SHARED:-$here/../shared}/data
bash scripts/setup.sh >/dev/null
if [ -n "${PARITY_WORK:-}" ]; then
  work=$PARITY_WORK; mkdir -p "$work"
  trap 'for w in old new; do git worktree remove --force "$work/$w" 2>/dev/null || true; done' EXIT
else
  work=$(mktemp -d /tmp/frostline-parity-XXXX)
  trap 'for w in old new; do git worktree remove --force "$work/$w" 2>/dev/null || true; done; rm -rf "$work"' EXIT
fi

for which in ${PARITY_SIDES:-old new}; do
  [ -e "$work/$which.done" ] && continue
  ref=$rev_id; [ "$which" = new ] && ref=$new_id
  git worktree add --detach "$work/$which" "$ref" >/dev/null 2>&1
  (cd "$work/$which" && CARGO_TARGET_DIR="$here/target" cargo build --release --quiet)
  cp "$here/target/release/frostline" "$work/frostline-$which"
done

model="$here/models/all-MiniLM-L6-v2"
cat > "$work/run.toml" <<TOML
model = "$model"
seed = 13
[train]
epochs = 20
[[tasks]]
name = "banking77"
train = "$shared/banking77/train.csv"
test = "$shared/banking77/test.csv"
[[tasks]]
name = "sst2"
train = "$shared/sst2/train.csv"
dev = "$shared/sst2/dev.csv"
test = "$shared/sst2/test.csv"
[[tasks]]
name = "goemotions"
train = "$shared/goemotions_ekman/train.csv"
dev = "$shared/goemotions_ekman/dev.csv"
test = "$shared/goemotions_ekman/test.csv"
TOML

cat > "$work/frost.toml" <<TOML
model = "$model"
seed = 13
[train]
epochs = 3
lr = 1e-3
[[tasks]]
name = "sst2"
train = "$shared/sst2/train.csv"
dev = "$shared/sst2/dev.csv"
test = "$shared/sst2/test.csv"
TOML

cat > "$work/multilabel.toml" <<TOML
model = "$model"
seed = 13
[train]
epochs = 20
[[tasks]]
name = "goemotions28"
kind = "multi-label"
label_column = "labels"
threshold = "per-label"
train = "$shared/goemotions/train.csv"
dev = "$shared/goemotions/dev.csv"
test = "$shared/goemotions/test.csv"
TOML

cat > "$work/ner.toml" <<TOML
model = "$model"
seed = 13
[train]
epochs = 2
lr = 1e-3
[[tasks]]
name = "wnut17"
kind = "token-classification"
train = "$shared/wnut17/train.conll"
dev = "$shared/wnut17/dev.conll"
test = "$shared/wnut17/test.conll"
TOML

variants=("linear:" "mlp:--head mlp" "centroid:--regime fully-frozen --head centroid" "zero-shot:--regime fully-frozen --head zero-shot")
for which in ${PARITY_SIDES:-old new}; do
  [ -e "$work/$which.done" ] && continue
  for v in "${variants[@]}"; do
    name=${v%%:*}
    # shellcheck disable=SC2086
    "$work/frostline-$which" train --no-progress --run "$work/run.toml" --cache-dir "$work/cache" \
      --out "$work/$which-$name" ${v#*:} >/dev/null
  done
  "$work/frostline-$which" train --no-progress --run "$work/frost.toml" --cache-dir "$work/cache" \
    --regime frost-line=5 --max-length 64 --out "$work/$which-frost-line=5" >/dev/null
  "$work/frostline-$which" train --no-progress --run "$work/multilabel.toml" --cache-dir "$work/cache" \
    --out "$work/$which-multi-label" >/dev/null
  "$work/frostline-$which" train --no-progress --run "$work/ner.toml" --cache-dir "$work/cache" \
    --regime frost-line=5 --out "$work/$which-ner" >/dev/null
  touch "$work/$which.done"
done
[ -e "$work/old.done" ] && [ -e "$work/new.done" ] || exit 0

python3 - "$work" "$rev_id" "$new_id" "$out" <<'PY'
import json, sys
from pathlib import Path
work, rev, head, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
def tests(ck):
    m = json.loads((ck / "manifest.json").read_text())
    return {t.get("name") or t["config"]["name"]: t["test"] for t in m["tasks"]}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
simd = " ".join(f for f in flags if f.startswith(("avx", "amx", "fma")))
lines = [f"# Heads accuracy before ({rev}) and after ({head}) the change", "",
         f"CPU: {cpu} ({simd}); both binaries ran side by side on it.", "",
         "Full ../shared splits, seed 13, 20 epochs, one embedding cache for both binaries "
         "(`bash scripts/bench_parity.sh`); frost-line=5: SST-2 only, max length 64, 3 epochs, lr 1e-3; "
         "multi-label: GoEmotions 28 labels, per-label thresholds, 20 epochs; NER: WNUT-17, frost-line=5, "
         "2 epochs, lr 1e-3. Test metrics in % (accuracy / macro-F1; multi-label: micro-F1 / "
         "macro-F1; NER: entity F1 / precision); identical compares every test metric the manifest holds.", "",
         "| run | task | metric | before | after | metric | before | after | identical |",
         "|---|---|---|---:|---:|---|---:|---:|---|"]
same_all = True
def pick(m):
    keys = [k for k in ("accuracy", "micro_f1", "entity_f1", "f1", "macro_f1", "precision") if isinstance(m.get(k), (int, float))]
    return (keys + [k for k, v in m.items() if isinstance(v, (int, float)) and k not in keys])[:2]
for name in ["linear", "mlp", "centroid", "zero-shot", "frost-line=5", "multi-label", "ner"]:
    a, b = tests(work / f"old-{name}"), tests(work / f"new-{name}")
    for task in a:
        same = a[task] == b[task]
        same_all &= same
        cells = " | ".join(f"{k} | {100 * a[task][k]:.2f} | {100 * b[task].get(k, float('nan')):.2f}" for k in pick(a[task]))
        lines.append(f"| {name} | {task} | {cells} | {'yes' if same else 'NO'} |")
lines += ["", "Every metric identical: " + ("yes" if same_all else "NO"), ""]
Path(out).write_text("\n".join(lines))
print("\n".join(lines))
sys.exit(0 if same_all else 1)
PY
