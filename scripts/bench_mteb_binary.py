"""MTEB replay on a binary task (SST-2, k = 8): `frostline mteb` next to the same protocol in
Python (numpy RandomState(42) shuffles + scikit-learn LogisticRegression(max_iter=100), which fits
its binary objective on two labels) on the very same embeddings, experiment by experiment."""

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402


def labels(path):
    with open(path, encoding="utf-8", newline="") as f:
        return [r["label"] for r in csv.DictReader(f)]


def main():
    ap = argparse.ArgumentParser()
    benchlib.common_args(ap, "frostline", "model", "shared", "work", "out")
    a = ap.parse_args()
    data, work = Path(a.shared) / "data" / "sst2", Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    rust = benchlib.run_frostline(a.frostline, "mteb", "--no-progress", "--model", a.model, "--train", data / "train.csv",
                                  "--test", data / "test.csv", "--k", "8")[0]["experiments"]
    x = {}
    for split in ["train", "test"]:
        npy = work / f"sst2-{split}.npy"
        benchlib.sh([a.frostline, "embed", "--no-progress", "--model", a.model, "--input", str(data / f"{split}.csv"),
                     "--output", str(npy)])
        x[split] = np.load(npy)
    names = sorted(set(labels(data / "train.csv")))
    ty = np.array([names.index(l) for l in labels(data / "train.csv")])
    ey = np.array([names.index(l) for l in labels(data / "test.csv")])
    from sklearn.linear_model import LogisticRegression

    idxs = np.arange(len(ty))
    py = []
    for _ in range(10):
        np.random.RandomState(42).shuffle(idxs)
        counter, rows = defaultdict(int), []
        for i in idxs:
            if counter[ty[i]] < 8:
                rows.append(i)
                counter[ty[i]] += 1
        clf = LogisticRegression(max_iter=100).fit(x["train"][rows], ty[rows])
        py.append(float((clf.predict(x["test"]) == ey).mean()))
    lines = ["# MTEB replay on a binary task: SST-2, k = 8, 10 experiments", "",
             "Written by `scripts/bench_mteb_binary.sh`: `frostline mteb` (Rust L-BFGS, scikit-learn's binary",
             "objective for two labels) and the protocol in Python (numpy shuffles + scikit-learn",
             "LogisticRegression(max_iter=100)) on the same cached all-MiniLM-L6-v2 vectors.", "",
             "| experiment | frostline % | scikit-learn % | difference (points) |", "|---:|---:|---:|---:|"]
    for i, (r, q) in enumerate(zip(rust, py)):
        lines.append(f"| {i} | {100 * r:.2f} | {100 * q:.2f} | {100 * (r - q):+.2f} |")
    worst = max(abs(r - q) for r, q in zip(rust, py))
    lines += [f"| mean | {100 * np.mean(rust):.2f} | {100 * np.mean(py):.2f} | {100 * (np.mean(rust) - np.mean(py)):+.2f} |",
              "", f"Largest per-experiment difference: {100 * worst:.2f} points "
              f"({sum(abs(r - q) < 1e-9 for r, q in zip(rust, py))} of 10 identical)."]
    benchlib.write_report(a.out, lines)


if __name__ == "__main__":
    main()
