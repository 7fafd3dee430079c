#!/usr/bin/env python3
"""The MLP head on frozen vectors next to scikit-learn's MLPClassifier, and the sweep on dev that
chose its defaults. Run through scripts/bench_mlp.sh.

Each dataset (Banking77, SST-2, GoEmotions-Ekman; full splits of ../shared/data) is one
single-task run on the embedding cache. The sweep trains the MLP head over learning rate × hidden
width × dropout (up to 60 epochs, early stopping on dev macro-F1 with patience 8) and ranks the
configurations by their mean dev macro-F1 over the three datasets, never by test. The best one is
reported on test next to the previous default (lr 2e-2, 256 hidden, dropout 0.1, 20 epochs,
patience 5) and next to scikit-learn's MLPClassifier with its defaults (100 ReLU units, Adam
lr 1e-3, L2 1e-4, batches of 200, up to 200 epochs) fitted on the same vectors.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

# name: (folder, dev file or None for frostline's carved 10 %)
DATASETS = {"banking77": ("banking77", None), "sst2": ("sst2", "dev.csv"),
            "goemotions": ("goemotions_ekman", "dev.csv")}
GRID = {"lr": ["3e-4", "1e-3", "3e-3", "1e-2"], "hidden": ["256", "512"], "dropout": ["0.1", "0.3"]}
SWEEP_EPOCHS = ["--set", "train.epochs=60", "--set", "train.patience=8"]
OLD = ["--set", "train.lr=2e-2", "--set", "train.mlp_hidden=256", "--set", "train.dropout=0.1",
       "--set", "train.epochs=20", "--set", "train.patience=5"]


def labels(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        return [r["label"] for r in csv.DictReader(f)]


def train(args, name: str, *extra: str) -> dict:
    folder, dev = DATASETS[name]
    data = Path(args.shared) / "data" / folder
    cmd = ["train", "--no-progress", "--model", args.model, "--head", "mlp", "--set", "seed=13",
           "--train", data / "train.csv", "--test", data / "test.csv"]
    if dev:
        cmd += ["--dev", data / dev]
    summary, _ = benchlib.run_frostline(args.frostline, *cmd, *extra)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    benchlib.common_args(ap, "frostline", "model", "shared", "work", "out")
    args = ap.parse_args()
    from sklearn.metrics import f1_score
    from sklearn.neural_network import MLPClassifier

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cpu, flags = benchlib.cpu_info()
    configs = [dict(zip(GRID, v)) for v in itertools.product(*GRID.values())]
    # The sweep's dev scores are kept in the work folder: a second run (after the defaults it
    # chose were built in) reuses them and reruns only the test rows.
    sweep_file = work / "sweep.json"
    dev_f1: dict[str, dict[str, float]] = json.loads(sweep_file.read_text()) if sweep_file.exists() else {}
    for c in configs:
        key = f"lr {c['lr']}, hidden {c['hidden']}, dropout {c['dropout']}"
        if key in dev_f1:
            continue
        sets = ["--set", f"train.lr={c['lr']}", "--set", f"train.mlp_hidden={c['hidden']}",
                "--set", f"train.dropout={c['dropout']}", *SWEEP_EPOCHS]
        dev_f1[key] = {n: train(args, n, *sets)["tasks"][0]["dev"]["macro_f1"] for n in DATASETS}
        print(key, dev_f1[key], flush=True)
        sweep_file.write_text(json.dumps(dev_f1))
    best = max(dev_f1, key=lambda k: np.mean(list(dev_f1[k].values())))
    best_sets = []
    for part in best.split(", "):
        k, v = part.split(" ")
        best_sets += ["--set", f"train.{ {'lr': 'lr', 'hidden': 'mlp_hidden', 'dropout': 'dropout'}[k] }={v}"]
    rows = {"frostline MLP, previous default (lr 2e-2, 256, dropout 0.1, 20 epochs, patience 5)": {},
            f"frostline MLP, best on dev ({best}, ≤ 60 epochs, patience 8)": {},
            "frostline MLP, new defaults (no flags)": {},
            "scikit-learn MLPClassifier() defaults, same vectors": {}}
    keys = list(rows)
    for n, (folder, _) in DATASETS.items():
        for key, extra in ((keys[0], OLD), (keys[1], best_sets + SWEEP_EPOCHS), (keys[2], [])):
            s = train(args, n, *extra)
            rows[key][n] = (s["tasks"][0]["test"]["accuracy"], s["tasks"][0]["test"]["macro_f1"],
                            s["training_seconds"])
        data = Path(args.shared) / "data" / folder
        xs = {}
        for split in ("train", "test"):
            out = work / f"{n}-{split}.npy"
            out.unlink(missing_ok=True)
            benchlib.sh([args.frostline, "embed", "--no-progress", "--model", args.model,
                         "--input", data / f"{split}.csv", "--output", out])
            xs[split] = np.load(out)
        t0 = time.perf_counter()
        clf = MLPClassifier(random_state=13).fit(xs["train"], labels(data / "train.csv"))
        secs = time.perf_counter() - t0
        truth = labels(data / "test.csv")
        pred = clf.predict(xs["test"])
        rows[keys[3]][n] = (float((pred == np.array(truth)).mean()), f1_score(truth, pred, average="macro"), secs)
    lines = ["# The MLP head on frozen vectors vs scikit-learn's MLPClassifier", "",
             f"- CPU: **{cpu}**", f"- flags: {flags}", "",
             "all-MiniLM-L6-v2 vectors from the cache; full splits of ../shared/data; one single-task "
             "run per dataset. frostline carves 10 % of Banking77's train split as its dev set (the "
             "other two have dev files); scikit-learn fits on all of train. Test accuracy / macro-F1 (%).",
             "", "| method | Banking77 acc | F1 | SST-2 acc | F1 | GoEmotions-Ekman acc | F1 | train s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, res in rows.items():
        cells = " | ".join(f"{100 * res[n][0]:.2f} | {100 * res[n][1]:.2f}" for n in DATASETS)
        lines.append(f"| {key} | {cells} | {sum(r[2] for r in res.values()):.1f} |")
    lines += ["", "The sweep: dev macro-F1 (%) per configuration (≤ 60 epochs, patience 8), ranked by the mean:", "",
              "| configuration | " + " | ".join(DATASETS) + " | mean |", "|---|" + "---:|" * (len(DATASETS) + 1)]
    for key in sorted(dev_f1, key=lambda k: -np.mean(list(dev_f1[k].values()))):
        v = dev_f1[key]
        lines.append(f"| {key} | " + " | ".join(f"{100 * v[n]:.2f}" for n in DATASETS) +
                     f" | {100 * np.mean(list(v.values())):.2f} |")
    benchlib.write_report(args.out, lines)


if __name__ == "__main__":
    main()
