"""Multi-label benchmark on GoEmotions (28 labels): frostline's frozen backbone (linear head,
thresholds tuned on dev: global and per label) and frost line, next to scikit-learn one-vs-rest
LogisticRegression(C=1) on the very same cached embeddings with a dev-tuned global threshold.
Writes a Markdown table (test micro-F1 / macro-F1 / subset accuracy, training seconds)."""

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402


def label_sets(path: Path):
    with open(path, encoding="utf-8", newline="") as f:
        return [r["labels"].split("|") for r in csv.DictReader(f)]


def indicator(sets, names):
    idx = {n: i for i, n in enumerate(names)}
    y = np.zeros((len(sets), len(names)), dtype=np.int8)
    for r, s in enumerate(sets):
        for l in s:
            if l in idx:
                y[r, idx[l]] = 1
    return y


def scores(y, pred):
    from sklearn.metrics import f1_score

    return (
        100 * f1_score(y, pred, average="micro", zero_division=0),
        100 * f1_score(y, pred, average="macro", zero_division=0),
        100 * float((y == pred).all(axis=1).mean()),
    )


def main():
    ap = argparse.ArgumentParser()
    benchlib.common_args(ap, "frostline", "model", "shared", "work", "out")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--frost-epochs", type=int, default=2)
    ap.add_argument("--frost-line", type=int, default=4)
    a = ap.parse_args()
    fl, work, data = a.frostline, Path(a.work), Path(a.shared) / "data" / "goemotions"
    work.mkdir(parents=True, exist_ok=True)
    run = work / "run.toml"
    run.write_text(
        f'model = "{Path(a.model).resolve()}"\nseed = 13\n[train]\nepochs = {a.epochs}\n'
        f'[[tasks]]\nname = "emotion"\nkind = "multi-label"\nlabel_column = "labels"\n'
        f'train = "{data / "train.csv"}"\ndev = "{data / "dev.csv"}"\ntest = "{data / "test.csv"}"\n'
    )
    rows = []

    def frostline(name, *sets):
        out = work / name
        j, wall = benchlib.run_frostline(fl, "train", "--no-progress", "--force", "--run", run, "--out", out, *sets)
        test = j["tasks"][0]["test"]
        m = json.loads((out / "manifest.json").read_text())
        th = m["tasks"][0]["thresholds"]
        th_text = f"{th[0]:.2f}" if len(set(th)) == 1 else f"per label, {min(th):.2f}–{max(th):.2f}"
        rows.append((name, 100 * test["micro_f1"], 100 * test["macro_f1"], 100 * test["accuracy"], th_text,
                     j["training_seconds"], wall))
        print(rows[-1], flush=True)

    frostline("frozen-backbone, linear, global threshold")
    frostline("frozen-backbone, linear, per-label thresholds", "--set", "tasks.emotion.threshold=per-label")

    # scikit-learn on the same cached vectors (the cache serves them: no new embedding).
    x = {}
    for split in ["train", "dev", "test"]:
        npy = work / f"{split}.npy"
        benchlib.sh([fl, "embed", "--no-progress", "--model", a.model, "--input", str(data / f"{split}.csv"), "--output", str(npy)])
        x[split] = np.load(npy)
    names = sorted({l for s in label_sets(data / "train.csv") for l in s})
    y = {s: indicator(label_sets(data / f"{s}.csv"), names) for s in ["train", "dev", "test"]}
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    t0 = time.time()
    clf = OneVsRestClassifier(LogisticRegression(C=1.0, max_iter=1000)).fit(x["train"], y["train"])
    fit_s = time.time() - t0
    p_dev, p_test = clf.predict_proba(x["dev"]), clf.predict_proba(x["test"])
    grid = [i / 100 for i in range(1, 100)]
    best = max(grid, key=lambda t: (scores(y["dev"], (p_dev >= t).astype(np.int8))[0], -abs(t - 0.5)))
    best_macro = max(grid, key=lambda t: (scores(y["dev"], (p_dev >= t).astype(np.int8))[1], -abs(t - 0.5)))
    for t, label in [(best, "dev-tuned (micro-F1)"), (best_macro, "dev-tuned (macro-F1)"), (0.5, "fixed")]:
        mi, ma, acc = scores(y["test"], (p_test >= t).astype(np.int8))
        rows.append((f"scikit-learn one-vs-rest LogisticRegression(C=1), {label} threshold", mi, ma, acc,
                     f"{t:.2f}", fit_s, fit_s))
        print(rows[-1], flush=True)

    frostline(f"frost line N={a.frost_line}, linear, global threshold",
              "--set", f"train.regime=frost-line={a.frost_line}", "--set", f"train.epochs={a.frost_epochs}",
              "--max-length", "64")

    lines = [
        "# Multi-label: GoEmotions, 28 labels (test split, 5,421 rows)",
        "",
        "Written by `scripts/bench_multilabel.sh`. All rows use the same all-MiniLM-L6-v2 sentence",
        "vectors from frostline's cache (the frost line: token states below layer "
        f"{a.frost_line}, layers above trained, max length 64, {a.frost_epochs} epochs). Thresholds are tuned on the dev",
        "split (grid 0.01–0.99, micro-F1 for a global one, each label's F1 for per-label ones).",
        f"frostline frozen-backbone heads: AdamW + binary cross-entropy, {a.epochs} epochs, best dev epoch kept.",
        "",
        "| run | micro-F1 | macro-F1 | subset accuracy | threshold | training s | wall s |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]} | {r[5]:.1f} | {r[6]:.1f} |")
    benchlib.write_report(a.out, lines)


if __name__ == "__main__":
    main()
