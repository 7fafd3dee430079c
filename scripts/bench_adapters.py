#!/usr/bin/env python3
"""Parameter-efficient tuning above the frost line, side by side. Run through
scripts/bench_adapters.sh.

For each dataset (Banking77; GoEmotions-Ekman, train subsampled for time; WNUT-17, a token task):
frozen backbone (linear head), the frost line N with full layers, BitFit at N, LoRA r = 8 at N
and at N = 0 — the same epochs, batch, max length and head learning rate; the layers' learning
rate is each tuning's default (full 5e-5, or the dataset's recipe; BitFit 1e-3; LoRA 1e-3, factors
on all six dense matrices); a second LoRA row at N keeps the earlier recipe (Q, K, V, O at 5e-4)
for comparison. Reports test accuracy / macro-F1 / entity F1, trainable parameters,
the checkpoint's tensor bytes and seconds per epoch, and checks the targets: LoRA within 0.5
point of the full frost line at the same N with a checkpoint <= 5 % of its size, BitFit above
the frozen backbone.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402


def train(fl: str, run: Path, out: Path, cache: Path, max_length: int, regime: str, *sets: str,
          start: Path | None = None) -> dict:
    args = ["--no-progress", "--run", run, "--out", out, "--force", "--cache-dir", cache, "--max-length", max_length,
            "--regime", regime]
    if start is not None:
        args += ["--from", start]
    for s in sets:
        args += ["--set", s]
    j, wall = benchlib.run_frostline(fl, "train", *args)
    log = list(csv.DictReader(open(out / "training_log.csv")))
    task = j["tasks"][0]
    return {
        "tasks": j["tasks"],
        "test": task["test"],
        "params": j["trainable_params"],
        "bytes": j["checkpoint_bytes"],
        "epoch_s": float(np.median([float(r["train_seconds"]) for r in log])) if log else float("nan"),
        "train_s": j["training_seconds"],
        "wall": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    benchlib.common_args(ap, "frostline", "model", "shared")
    ap.add_argument("--frost-line", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--head-lr", type=float, default=2e-2)
    ap.add_argument("--goemotions-train", type=int, default=8000)
    ap.add_argument("--warm-start", action="store_true",
                    help="every tuned run starts its head from the frozen-backbone head (linear probe, then fine-tune)")
    ap.add_argument("--skip", action="append", default=[], help="a part to leave out (Banking77, GoEmotions-Ekman, WNUT-17, two-task)")
    benchlib.common_args(ap, "out", out={"default": "bench-results/adapters.md"})
    args = ap.parse_args()
    fl, shared = args.frostline, Path(args.shared) / "data"
    work = benchlib.scratch("frostline-adapters-")
    rng = random.Random(13)
    n = args.frost_line

    sets = {}
    for name, files in benchlib.sentence_sets(shared, work, rng, args.goemotions_train).items():
        sets[name] = dict(files=files, kind=None, batch=args.batch, head_lr=args.head_lr, epochs=args.epochs, full_lr=5e-5)
    # WNUT-17: bench_ner.py's recipe for the frost line (batch 16, head lr 1e-3, layers 1e-4, 4 epochs).
    w = shared / "wnut17"
    sets["WNUT-17"] = dict(files=(w / "train.conll", w / "dev.conll", w / "test.conll"),
                           kind="token-classification", batch=16, head_lr=1e-3, epochs=4, full_lr=1e-4)

    model, flags = benchlib.cpu_info()
    lines = [f"# Adapters above the frost line: BitFit and LoRA vs full layers (N = {n})", "",
             f"CPU: {model}; flags: {flags}; 2 threads.", "",
             f"Same budget in every tuned run of a dataset: its epochs, batch, max length {args.max_length}, head lr, AdamW "
             "(weight decay 0.01, 5 % warm-up + cosine, clip 1.0), test score at the best dev epoch. The layers' learning "
             "rate: full layers the dataset's recipe, BitFit 1e-3 and LoRA 1e-3 (their defaults). LoRA: r = 8, α = 16 "
             "on all six dense matrices (Q, K, V, O, FFN in, FFN out), the default; the row `lora[qkvo, 5e-4]` is the "
             "earlier default (Q, K, V, O at lr 5e-4). Frozen backbone: linear head, 20 epochs. GoEmotions train: a seeded random "
             f"{args.goemotions_train} of 39,363 rows (time); dev and test full. Checkpoint bytes: the heads' and the "
             "tuned layers' tensor files. Tuned runs' heads: "
             f"{'warm-started from the frozen-backbone head (linear probe, then fine-tune)' if args.warm_start else 'from scratch'}.", "",
             "| dataset | regime | test acc | test macro-F1 | entity F1 | trainable params | checkpoint bytes | s / epoch |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    checks = []
    for name, ds in sets.items():
        if name in args.skip:
            continue
        tr, dv, te = ds["files"]
        kind = f'kind = "{ds["kind"]}"\ntoken_layer = 6\n' if ds["kind"] else ""
        run = work / f"{name}.toml"
        run.write_text(f'model = "{Path(args.model).resolve()}"\nseed = 13\n[train]\nepochs = {ds["epochs"]}\n'
                       f'batch_size = {ds["batch"]}\nlr = {ds["head_lr"]}\npatience = 0\n'
                       f'[[tasks]]\nname = "task"\n{kind}train = "{tr}"\ndev = "{dv}"\ntest = "{te}"\n')
        cache = work / f"cache-{name}"
        ml = args.max_length
        res = {}
        res["frozen-backbone"] = train(fl, run, work / f"{name}-frozen", cache, ml, "frozen-backbone", "train.lr=2e-2" if not ds["kind"] else f"train.lr={ds['head_lr']}", "train.epochs=20")
        start = work / f"{name}-frozen" if args.warm_start else None
        res[f"frost-line={n}"] = train(fl, run, work / f"{name}-full", cache, ml, f"frost-line={n}", f"train.encoder_lr={ds['full_lr']}", start=start)
        res[f"bitfit,frost-line={n}"] = train(fl, run, work / f"{name}-bitfit", cache, ml, f"bitfit,frost-line={n}", start=start)
        res[f"lora,frost-line={n}"] = train(fl, run, work / f"{name}-lora", cache, ml, f"lora,frost-line={n}", start=start)
        res[f"lora[qkvo, 5e-4],frost-line={n}"] = train(
            fl, run, work / f"{name}-lora-qkvo", cache, ml, f"lora,frost-line={n}", "train.encoder_lr=5e-4",
            'train.lora.targets=["query","key","value","attention_output"]', start=start)
        res["lora,frost-line=0"] = train(fl, run, work / f"{name}-lora0", cache, ml, "lora,frost-line=0", start=start)
        for regime, r in res.items():
            t = r["test"]
            ef1 = t.get("entity_f1")
            per = "–" if regime == "frozen-backbone" else f"{r['epoch_s']:.1f}"
            lines.append(f"| {name} | {regime} | {100 * t['accuracy']:.2f} | {100 * t['macro_f1']:.2f} | "
                         f"{'–' if ef1 is None else f'{100 * ef1:.2f}'} | {r['params']:,} | {r['bytes']:,} | {per} |")
        score = (lambda t: t["entity_f1"]) if ds["kind"] else (lambda t: t["accuracy"])
        what = "entity F1" if ds["kind"] else "accuracy"
        full, lora, bitfit, frozen = (res[f"frost-line={n}"], res[f"lora,frost-line={n}"],
                                      res[f"bitfit,frost-line={n}"], res["frozen-backbone"])
        gap = 100 * (score(lora["test"]) - score(full["test"]))
        share = lora["bytes"] / full["bytes"]
        bf = 100 * (score(bitfit["test"]) - score(frozen["test"]))
        checks.append(f"- {name}: LoRA vs full frost line {gap:+.2f} {what} points (target ≥ −0.5: "
                      f"{'met' if gap >= -0.5 else 'MISSED'}); LoRA checkpoint {100 * share:.1f} % of the full one "
                      f"(target ≤ 5 %: {'met' if share <= 0.05 else 'MISSED'}); BitFit vs frozen backbone {bf:+.2f} points "
                      f"(target > 0: {'met' if bf > 0 else 'MISSED'}); LoRA on Q, K, V, O at 5e-4 vs full "
                      f"{100 * (score(res[f'lora[qkvo, 5e-4],frost-line={n}']['test']) - score(full['test'])):+.2f}; LoRA at N = 0 vs full at N = {n}: "
                      f"{100 * (score(res['lora,frost-line=0']['test']) - score(full['test'])):+.2f} points")
        print(f"{name} done", file=sys.stderr, flush=True)
    # Two tasks on one frozen backbone: one shared LoRA copy vs each task its own.
    two = []
    if "two-task" not in args.skip and not args.warm_start:
        (b_tr, b_dv, b_te), (g_tr, g_dv, g_te) = (sets["Banking77"]["files"], sets["GoEmotions-Ekman"]["files"])
        cache = work / "cache-two"
        res = {}
        for adapter in ("shared", "own"):
            run = work / f"two-{adapter}.toml"
            run.write_text(f'model = "{Path(args.model).resolve()}"\nseed = 13\n[train]\nepochs = {args.epochs}\n'
                           f'batch_size = {args.batch}\nlr = {args.head_lr}\npatience = 0\n'
                           f'[[tasks]]\nname = "intent"\nadapter = "{adapter}"\ntrain = "{b_tr}"\ndev = "{b_dv}"\ntest = "{b_te}"\n'
                           f'[[tasks]]\nname = "emotion"\nadapter = "{adapter}"\ntrain = "{g_tr}"\ndev = "{g_dv}"\ntest = "{g_te}"\n')
            res[adapter] = train(fl, run, work / f"two-{adapter}", cache, args.max_length, f"lora,frost-line={n}")
        two = ["", f"## Two tasks, one frozen backbone: one shared LoRA copy vs each task its own (lora,frost-line={n})", "",
               "Banking77 (intent) and GoEmotions-Ekman (emotion, the same train subset) in one run, sampled proportionally; "
               "the same budget as above.", "",
               "| adapters | intent test acc | intent macro-F1 | emotion test acc | emotion macro-F1 | trainable params | checkpoint bytes | s / epoch |",
               "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for adapter, r in res.items():
            by = {t["name"]: t["test"] for t in r["tasks"]}
            two.append(f"| {adapter} | {100 * by['intent']['accuracy']:.2f} | {100 * by['intent']['macro_f1']:.2f} | "
                       f"{100 * by['emotion']['accuracy']:.2f} | {100 * by['emotion']['macro_f1']:.2f} | {r['params']:,} | "
                       f"{r['bytes']:,} | {r['epoch_s']:.1f} |")
        print("two-task done", file=sys.stderr, flush=True)
    lines += ["", *checks, *two, "",
              "Seconds per epoch are the training steps alone (dev scoring excluded); each frost line's token-state "
              "cache is built once before its first run (embedding time, not counted).", ""]
    benchlib.write_report(args.out, lines)


if __name__ == "__main__":
    main()
