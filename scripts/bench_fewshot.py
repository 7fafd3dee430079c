#!/usr/bin/env python3
"""Few-shot: k labelled rows per label, frostline's regimes next to SetFit and a frozen body +
scikit-learn logistic regression, on the very same rows. Run through scripts/bench_fewshot.sh.

For each dataset, `frostline fewshot` draws k rows per label with each seed (seeds 42, 43, ...)
and trains its regimes on them: the frozen linear head, contrastive tuning of the whole body
(frost-line=0, SetFit's recipe: 20 iterations, 1 epoch, batches of 16 pairs, lr 2e-5) and
contrastive tuning above a frost line with a lighter recipe. It writes the rows it drew
(samples.csv); SetFit 1.2 (same body, same recipe, LogisticRegression head) and the frozen
body + LogisticRegression(C=1) are then trained on exactly those rows. Everything runs on the
same machine with the same threads, one after the other; every model is scored on the full test
split. Training seconds: SetFit's trainer.train(); frostline's contrastive stage plus heads (its
one-time embedding below the frost line is reported apart).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

# (dataset folder, k, seeds): the protocol (SST-2 k = 16 with 5 seeds, for time).
PLAN = [("sst2", 8, 10), ("sst2", 16, 5), ("banking77", 8, 3), ("goemotions_ekman", 8, 3)]
# frostline's variants: (regime, contrastive iterations); None for the frozen head.
VARIANTS = [
    ("frozen-backbone", None),
    ("contrastive,frost-line=0", 20),
    ("contrastive,frost-line=3", 20),
    ("contrastive,frost-line=5", 5),
]
# Variants left out where they would cost most of the bench's time, with the reason said.
SKIP = {
    "banking77": {
        "contrastive,frost-line=0": "not run: SetFit's FLOPs (24,640 pairs through all 6 layers, ~10 min a seed here)",
        "contrastive,frost-line=3": "not run: 1,540 steps through 3 layers, ~5 min a seed",
    }
}


def label(regime: str, iterations) -> str:
    if iterations is None:
        return "frozen linear"
    return f"N={regime.rsplit('=', 1)[1]}, {iterations} it."


def read_csv(path: Path) -> tuple[list[str], list[str]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def mean_std(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{100 * statistics.mean(xs):.2f} ± {100 * sd:.2f}"


def fewshot(args, data: Path, k: int, seeds: int, out: Path, regimes: list[str], *sets: str) -> dict:
    cmd = ["fewshot", "--no-progress", "--train", data / "train.csv", "--test", data / "test.csv",
           "--model", args.model, "--k", k, "--seeds", seeds, "--set", "seed=42",
           "--set", "train.precision=auto", "--out", out, "--force"]
    for r in regimes:
        cmd += ["--regime", r]
    for s in sets:
        cmd += ["--set", s]
    summary, _ = benchlib.run_frostline(args.frostline, *cmd)
    return summary


def samples(report: Path) -> dict[int, tuple[list[str], list[str]]]:
    by_seed: dict[int, tuple[list[str], list[str]]] = {}
    with open(report / "samples.csv", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            texts, labels = by_seed.setdefault(int(r["seed"]), ([], []))
            texts.append(r["text"])
            labels.append(r["label"])
    return by_seed


def setfit_run(st_model: str, texts, labels, test_texts, seed: int, work: Path) -> tuple[float, list[str]]:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(st_model)
    # Its checkpoints go to the work folder, never into the repository.
    targs = TrainingArguments(batch_size=16, num_epochs=1, num_iterations=20, seed=seed,
                              report_to="none", show_progress_bar=False, save_strategy="no",
                              output_dir=str(work / "setfit-checkpoints"))
    trainer = Trainer(model=model, args=targs,
                      train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    return seconds, list(model.predict(test_texts, batch_size=64))


def bf16_kernel(frostline: str) -> str:
    """What `precision auto` runs on this machine, as `frostline doctor` says it."""
    import subprocess
    out = subprocess.run([frostline, "doctor", "--json"], capture_output=True, text=True)
    engine = json.loads(out.stdout)["engine"]
    return f"{engine['bf16'] or engine['fp32']}; AMX {engine['amx_status']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    benchlib.common_args(ap, "frostline", "model", "st-model", "shared", "work", "threads", "out")
    ap.add_argument("--only", help="one dataset folder (for a quick check)")
    ap.add_argument("--max-seeds", type=int, help="at most this many seeds a dataset (a quick check)")
    args = ap.parse_args()
    import torch
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    cpu, flags = benchlib.cpu_info()
    lines = [
        "# Few-shot: frostline vs SetFit and a frozen body + logistic regression", "",
        f"- CPU: **{cpu}**", f"- flags: {flags}",
        f"- threads: {args.threads} (the machine's cores: frostline's ONNX Runtime and product "
        "kernels use them all; PyTorch `set_num_threads`)", "",
        "k rows per label drawn by `frostline fewshot` with each seed (42, 43, ...), written to its "
        "samples.csv; every model below trains on exactly those rows and is scored on the full "
        "test split (accuracy, % mean ± std over seeds). SetFit 1.2.0: all-MiniLM-L6-v2, 1 epoch, "
        "num_iterations 20, batch 16, lr 2e-5, LogisticRegression head. frozen + LR: the same "
        "body's sentence-transformers vectors, scikit-learn LogisticRegression(C=1). frostline "
        f"(precision auto; here: {bf16_kernel(args.frostline)}): the frozen linear head, "
        "and `contrastive,frost-line=N` with SetFit's pair recipe (N = 0 tunes the whole body) "
        "or fewer iterations, the pairs tuning layers ≥ N, then the linear head on the tuned "
        "vectors. Training seconds, mean per seed: SetFit's trainer.train(); frostline's "
        "contrastive stage + head (the one-time pass below the frost line is not in it).", "",
    ]
    header = ["dataset", "k", "seeds", "frozen + LR", "SetFit"] + [label(*v) for v in VARIANTS]
    header += ["s: SetFit"] + [f"s: {label(*v)}" for v in VARIANTS[1:]]
    lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    notes = []
    raw = []
    st = SentenceTransformer(args.st_model, device="cpu")
    for name, k, seeds in PLAN:
        if args.only and name != args.only:
            continue
        seeds = min(seeds, args.max_seeds or seeds)
        data = Path(args.shared) / "data" / name
        test_texts, test_labels = read_csv(data / "test.csv")
        fl_rows, drawn = [], None
        for iterations in sorted({v[1] for v in VARIANTS}, key=lambda i: i or 0):
            regimes = [r for r, i in VARIANTS if i == iterations and r not in SKIP.get(name, {})]
            if not regimes:
                continue
            report = work / f"{name}-k{k}-it{iterations}"
            sets = [] if iterations is None else [f"train.contrastive.iterations={iterations}"]
            fl_rows += fewshot(args, data, k, seeds, report, regimes, *sets)["rows"]
            if drawn is None:
                drawn = samples(report)
            assert drawn == samples(report), "every fewshot run of a seed drew the same rows"

        def fl(regime: str, key: str) -> list[float]:
            return [r[key] for r in fl_rows if r["regime"] == regime]

        test_x = st.encode(test_texts, batch_size=64)
        lr_acc, sf_acc, sf_sec = [], [], []
        for seed in sorted(drawn):
            texts, labels = drawn[seed]
            clf = LogisticRegression(C=1.0, max_iter=1000).fit(st.encode(texts, batch_size=64), labels)
            lr_acc.append(float((clf.predict(test_x) == np.array(test_labels)).mean()))
            seconds, pred = setfit_run(args.st_model, texts, labels, test_texts, seed, work)
            sf_acc.append(float((np.array(pred) == np.array(test_labels)).mean()))
            sf_sec.append(seconds)
            raw.append({"dataset": name, "k": k, "seed": seed, "frozen_lr": lr_acc[-1],
                        "setfit": sf_acc[-1], "setfit_seconds": seconds,
                        "setfit_macro_f1": f1_score(test_labels, pred, average="macro")})
            print(f"{name} k={k} seed {seed}: LR {lr_acc[-1]:.4f} SetFit {sf_acc[-1]:.4f} ({seconds:.1f} s)",
                  flush=True)
        cells = [name, str(k), str(len(drawn)), mean_std(lr_acc), mean_std(sf_acc)]
        for regime, _ in VARIANTS:
            why = SKIP.get(name, {}).get(regime)
            cells.append(mean_std(fl(regime, "accuracy")) if why is None else "–")
            if why:
                notes.append(f"- {name}, {regime}: {why}.")
        cells.append(f"{statistics.mean(sf_sec):.1f}")
        for regime, _ in VARIANTS[1:]:
            secs = fl(regime, "train_seconds")
            cells.append(f"{statistics.mean(secs):.1f} ({statistics.mean(secs) / statistics.mean(sf_sec):.3f}×)" if secs else "–")
        lines.append("| " + " | ".join(cells) + " |")
        raw.extend({"dataset": name, "k": k, **r} for r in fl_rows)
    raw_file = Path(args.out).with_suffix(".json")
    lines += [""] + notes + ["", f"Raw rows (per seed): {raw_file}."]
    raw_file.write_text(json.dumps(raw, indent=1), encoding="utf-8")
    benchlib.write_report(args.out, lines)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
