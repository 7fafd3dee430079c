#!/usr/bin/env python3
"""The frost line, side by side: does training layers >= N pay off, and is it cheaper than the
usual way? Run through scripts/bench_frost.sh.

For each dataset (Banking77; GoEmotions-Ekman, train subsampled for time): frostline
frozen-backbone (linear head), frostline frost-line=N (layers N..L-1 + linear head, native Rust),
and PyTorch fine-tuning the same layers with layers < N frozen — same budget: epochs, batch,
max length, learning rates (encoder / head), AdamW, 5 % warm-up + cosine, clip 1.0, no dropout
(frostline's native layers have none), best-dev epoch's test score. PyTorch re-runs the frozen
lower layers at every step; frostline reads their output from the token-state cache.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402


def sh_peak(cmd: list[str]) -> tuple[str, float]:
    """Runs a command; returns its output and its own peak resident memory (MiB), which
    benchlib.sh cannot tell apart from this process's."""
    with tempfile.TemporaryFile("w+") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        out.seek(0)
        text = out.read()
    if status != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{text}")
    return text, usage.ru_maxrss / 1024


def frostline(fl: str, run: Path, out: Path, cache: Path, *args: str) -> dict:
    t0 = time.perf_counter()
    _, peak = sh_peak([fl, "train", "--no-progress", "--run", str(run), "--out", str(out), "--cache-dir", str(cache), *args])
    m = json.loads((out / "manifest.json").read_text())
    m["wall"] = time.perf_counter() - t0
    m["peak_mib"] = peak
    log = list(csv.DictReader(open(out / "training_log.csv")))
    m["epoch_seconds"] = [float(r["train_seconds"]) for r in log]
    return m


def torch_finetune(st_model: str, data: dict, n: int, epochs: int, batch: int, max_len: int,
                   enc_lr: float, head_lr: float, threads: int, seed: int, init_head: Path | None = None,
                   bf16: bool = False) -> dict:
    """`bf16`: the training steps under `torch.autocast("cpu", dtype=torch.bfloat16)`."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(st_model)
    model = AutoModel.from_pretrained(st_model, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    for p in model.parameters():
        p.requires_grad = False
    top = [p for i, layer in enumerate(model.encoder.layer) if i >= n for p in layer.parameters()]
    for p in top:
        p.requires_grad = True
    classes = sorted(set(data["train"][1]))
    head = torch.nn.Linear(model.config.hidden_size, len(classes))
    if init_head is not None:  # warm start from frostline's frozen-backbone head (same class order)
        from safetensors.torch import load_file
        w = load_file(str(init_head))
        with torch.no_grad():
            head.weight.copy_(w["heads.task.0.weight"])
            head.bias.copy_(w["heads.task.0.bias"])
    opt = torch.optim.AdamW([{"params": top, "lr": enc_lr}, {"params": head.parameters(), "lr": head_lr}], weight_decay=0.01)
    x_train, y_train = data["train"][0], [classes.index(l) for l in data["train"][1]]
    steps = math.ceil(len(x_train) / batch) * epochs
    warm = round(0.05 * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, steps - warm)))))

    def embed(texts):
        enc = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        out = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        v = (out * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(v, dim=1)

    def accuracy(split):
        texts, labels = data[split]
        model.eval()
        preds = []
        with torch.no_grad():
            for i in range(0, len(texts), 64):
                preds += head(embed(texts[i:i + 64])).argmax(1).tolist()
        names = [classes[p] for p in preds]
        acc = float(np.mean([a == b for a, b in zip(names, labels)]))
        from sklearn.metrics import f1_score
        return acc, f1_score(labels, names, average="macro")

    rng = random.Random(seed)
    epoch_seconds, best = [], (-1.0, None)
    for _ in range(epochs):
        model.train()
        order = list(range(len(x_train)))
        rng.shuffle(order)
        t0 = time.perf_counter()
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = head(embed([x_train[j] for j in idx]))
                loss = torch.nn.functional.cross_entropy(logits.float(), torch.tensor([y_train[j] for j in idx]))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(top + list(head.parameters()), 1.0)
            opt.step()
            sched.step()
        epoch_seconds.append(time.perf_counter() - t0)
        dev = accuracy("dev")
        if dev[1] > best[0]:
            best = (dev[1], accuracy("test"))
    return {"test": best[1], "epoch_seconds": epoch_seconds}


def main() -> None:
    ap = argparse.ArgumentParser()
    benchlib.common_args(ap, "frostline", "model", "st-model", "shared")
    ap.add_argument("--frost-line", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--encoder-lr", type=float, default=5e-5)
    ap.add_argument("--head-lr", type=float, default=2e-2)
    ap.add_argument("--goemotions-train", type=int, default=8000)
    benchlib.common_args(ap, "threads")
    ap.add_argument("--warm-start", action="store_true",
                    help="both fine-tuning runs start their head from the frozen-backbone head (linear probe, then fine-tune)")
    benchlib.common_args(ap, "out", out={"default": "bench-results/frost.md"})
    args = ap.parse_args()
    fl, shared = args.frostline, Path(args.shared) / "data"
    work = benchlib.scratch("frostline-frost-")
    rng = random.Random(13)

    # Banking77: frostline carves 10 % of train as dev; PyTorch gets the very same split.
    sets = benchlib.sentence_sets(shared, work, rng, args.goemotions_train)

    lines = [f"# Frost line N = {args.frost_line} (layers {args.frost_line}-5 + linear head) vs frozen backbone vs PyTorch",
             "", f"Budget for both fine-tuning runs: {args.epochs} epochs, batch {args.batch}, max length {args.max_length}, "
             f"AdamW lr {args.encoder_lr:g} (layers) / {args.head_lr:g} (head), weight decay 0.01, 5 % warm-up + cosine, "
             f"clip 1.0, no dropout, test score at the best dev macro-F1 epoch; {args.threads} threads; heads "
             f"{'warm-started from the frozen-backbone head (linear probe, then fine-tune)' if args.warm_start else 'from scratch'}. GoEmotions train: "
             f"a seeded random {args.goemotions_train} of 39,363 rows (time); dev and test full.", "",
             "| dataset | method | test acc | test macro-F1 | train s / epoch | total train s |", "|---|---|---:|---:|---:|---:|"]
    summary = []
    for name, (tr, dv, te) in sets.items():
        run = work / f"{name}.toml"
        run.write_text(f'model = "{Path(args.model).resolve()}"\nseed = 13\n[train]\nepochs = {args.epochs}\nbatch_size = {args.batch}\n'
                       f'lr = {args.head_lr}\nencoder_lr = {args.encoder_lr}\npatience = 0\n'
                       f'[[tasks]]\nname = "task"\ntrain = "{tr}"\ndev = "{dv}"\ntest = "{te}"\n')
        cache = work / f"cache-{name}"
        frozen = frostline(fl, run, work / f"{name}-frozen", cache, "--max-length", str(args.max_length), "--set", "train.lr=2e-2", "--set", "train.epochs=20")
        warm = ["--from", str(work / f"{name}-frozen")] if args.warm_start else []
        frost = frostline(fl, run, work / f"{name}-frost", cache, "--max-length", str(args.max_length), "--regime", f"frost-line={args.frost_line}", *warm)
        data = {"train": benchlib.read_labelled(tr), "dev": benchlib.read_labelled(dv), "test": benchlib.read_labelled(te)}
        pt = torch_finetune(args.st_model, data, args.frost_line, args.epochs, args.batch, args.max_length,
                            args.encoder_lr, args.head_lr, args.threads, 13,
                            work / f"{name}-frozen" / "heads.safetensors" if args.warm_start else None)
        rows = [
            ("frostline frozen-backbone, linear head (20 epochs, lr 2e-2)", frozen["tasks"][0]["test"]["accuracy"], frozen["tasks"][0]["test"]["macro_f1"],
             float("nan"), frozen["training_seconds"]),
            (f"frostline frost-line={args.frost_line}", frost["tasks"][0]["test"]["accuracy"], frost["tasks"][0]["test"]["macro_f1"],
             float(np.median(frost["epoch_seconds"])), frost["training_seconds"]),
            (f"PyTorch, layers < {args.frost_line} frozen", pt["test"][0], pt["test"][1], float(np.median(pt["epoch_seconds"])), sum(pt["epoch_seconds"])),
        ]
        for label, acc, f1, per, total in rows:
            per_s = "–" if per != per else f"{per:.1f}"
            lines.append(f"| {name} | {label} | {100 * acc:.2f} | {100 * f1:.2f} | {per_s} | {total:.1f} |")
        summary.append(f"- {name}: frost line vs frozen backbone {100 * (rows[1][1] - rows[0][1]):+.2f} acc points "
                       f"({100 * (rows[1][2] - rows[0][2]):+.2f} macro-F1); vs PyTorch {100 * (rows[1][1] - rows[2][1]):+.2f} acc points; "
                       f"time per epoch {rows[1][3] / rows[2][3]:.2f}× PyTorch's")
        token_bytes = sum(f.stat().st_size for entry in cache.iterdir()
                          if json.loads((entry / "manifest.json").read_text())["content"] == "tokens"
                          for f in (entry / "chunks").glob("*.flc"))
        summary.append(f"  token-state cache at layer {args.frost_line}: {token_bytes / 2**20:.0f} MiB on disk (f32, "
                       f"{len(data['train'][0]) + len(data['dev'][0]) + len(data['test'][0])} texts); peak memory: "
                       f"frostline frost-line run {frost['peak_mib']:.0f} MiB, frozen-backbone run {frozen['peak_mib']:.0f} MiB")
        print(f"{name} done", file=sys.stderr, flush=True)
    import resource
    torch_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary.append(f"- PyTorch process peak memory (both datasets, model + tokenizer + autograd): {torch_peak:.0f} MiB")
    lines += ["", *summary, "", "Per-epoch times are the training steps alone for both (dev scoring excluded); the token-state "
              "cache is built once before training (embedding time, counted in neither).", ""]
    benchlib.write_report(args.out, lines)


if __name__ == "__main__":
    main()
