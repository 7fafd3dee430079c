#!/usr/bin/env python3
"""One served graph per checkpoint (`frostline export --with-heads`) against `frostline predict`
on full test sets. Run through scripts/bench_served.sh.

One multi-task run (lora,frost-line=N; Banking77 intent, GoEmotions 28-label emotions as a
multi-label task, WNUT-17 entities on their own adapter; train sets subsampled for time — the
comparison is of the exported graph against frostline, not of accuracy), trained twice: fp32, and
with the frozen part int8 (--quantize-frozen). Each is exported with its heads, and the test texts
of all three sets are predicted by frostline (--all-probs) and by scripts/predict_onnx.py with
ONNX Runtime alone, which checks labels, label sets and entity spans exactly and probabilities
and entity scores within 1e-5.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402


def conll_sentences(path: Path) -> list[str]:
    return [s for s in path.read_text(encoding="utf-8").split("\n\n") if s.strip()]


def main() -> None:
    ap = argparse.ArgumentParser()
    benchlib.common_args(ap, "frostline", "model", "shared")
    ap.add_argument("--served-python", required=True, help="the set-up venv's python (onnxruntime, tokenizers, onnx)")
    ap.add_argument("--frost-line", type=int, default=4)
    ap.add_argument("--train-rows", type=int, default=3000)
    ap.add_argument("--max-length", type=int, default=64)
    benchlib.common_args(ap, "out", out={"default": "bench-results/served.md"})
    args = ap.parse_args()
    fl, shared = args.frostline, Path(args.shared).resolve() / "data"
    work = benchlib.scratch("frostline-served-")
    rng = random.Random(17)

    def subsample(src: Path, dest: Path) -> Path:
        with open(src, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        keep = sorted(rng.sample(range(1, len(rows)), min(args.train_rows, len(rows) - 1)))
        with open(dest, "w", encoding="utf-8", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows([rows[0]] + [rows[i] for i in keep])
        return dest

    b_train = subsample(shared / "banking77/train.csv", work / "b77.csv")
    g_train = subsample(shared / "goemotions/train.csv", work / "ge28.csv")
    w_sents = conll_sentences(shared / "wnut17/train.conll")
    (work / "wnut.conll").write_text("\n\n".join(w_sents[: args.train_rows]) + "\n", encoding="utf-8")
    texts = []
    for name in ("banking77", "goemotions"):
        with open(shared / name / "test.csv", encoding="utf-8", newline="") as f:
            texts += [r["text"] for r in csv.DictReader(f)]
    texts += [" ".join(l.split("\t")[0] for l in s.splitlines()) for s in conll_sentences(shared / "wnut17/test.conll")]
    with open(work / "input.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text"])
        w.writerows([t] for t in texts)
    run = work / "run.toml"
    run.write_text(
        f'model = "{Path(args.model).resolve()}"\nseed = 17\n[train]\nepochs = 1\nbatch_size = 32\n'
        f'[[tasks]]\nname = "intent"\ntrain = "{b_train}"\n'
        f'[[tasks]]\nname = "emotion"\nkind = "multi-label"\nlabel_column = "labels"\ntrain = "{g_train}"\n'
        f'dev = "{shared / "goemotions/dev.csv"}"\n'
        f'[[tasks]]\nname = "entities"\nkind = "token-classification"\nadapter = "own"\ntrain = "{work / "wnut.conll"}"\n'
        f'dev = "{shared / "wnut17/dev.conll"}"\n')

    model, flags = benchlib.cpu_info()
    n = args.frost_line
    lines = [f"# Served graphs (`export --with-heads`) vs `frostline predict` (lora,frost-line={n})", "",
             f"CPU: {model}; flags: {flags}; 2 threads.", "",
             f"One run of three tasks: Banking77 intent, GoEmotions 28 emotions (multi-label, thresholds tuned on dev), "
             f"WNUT-17 entities on their own LoRA adapter; train sets a seeded {args.train_rows} rows / sentences each, "
             f"1 epoch, max length {args.max_length}. Compared on {len(texts):,} texts: every Banking77 and GoEmotions test "
             "text and every WNUT-17 test sentence (words joined by spaces), each through all three tasks. "
             "`predict_onnx.py` runs the exported graph with ONNX Runtime alone (tokenizer.json + heads.json); it checks labels, "
             "label sets and entity spans exactly and probabilities / entity scores within 1e-5. Seconds: whole process, "
             "tokenization and decoding included (frostline's cache was filled by training, so its time is the embedding "
             "of texts it had not seen).", "",
             "| numerics | served graph | texts | labels / sets / spans that differ | max prob diff | max entity score diff | int8 products | frostline predict s | predict_onnx.py s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    ok_all = True
    for label, extra in (("fp32", []), ("int8 below the frost line", ["--quantize-frozen"])):
        tag = "int8" if extra else "fp32"
        ck, served = work / f"ck-{tag}", work / f"served-{tag}"
        cache = work / "cache"
        benchlib.run_frostline(fl, "train", "--no-progress", "--run", run, "--regime", f"lora,frost-line={n}", "--out", ck,
                               "--cache-dir", cache, "--max-length", args.max_length, *extra)
        j, _ = benchlib.run_frostline(fl, "export", "--checkpoint", ck, "--with-heads", "--out", served)
        _, fl_s = benchlib.run_frostline(fl, "predict", "--no-progress", "--all-probs", "--checkpoint", ck, "--input",
                                         work / "input.csv", "--output", work / f"fl-{tag}.csv", "--cache-dir", cache)
        t0 = time.perf_counter()
        p = subprocess.run([args.served_python, "scripts/predict_onnx.py", "--model", str(served), "--input",
                            str(work / "input.csv"), "--output", str(work / f"onnx-{tag}.csv"),
                            "--compare", str(work / f"fl-{tag}.csv")], capture_output=True, text=True)
        onnx_s = time.perf_counter() - t0
        try:
            r = json.loads(p.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            sys.exit(f"predict_onnx.py failed:\n{p.stdout}\n{p.stderr}")
        ok_all &= bool(r["ok"])
        lines.append(f"| {label} | {j['numerics']} | {r['rows']:,} | {len(r['mismatches'])} | {r['max_prob_diff']:.2e} | "
                     f"{r['max_score_diff']:.2e} | {r['int8_products']} | {fl_s:.1f} | {onnx_s:.1f} |")
        for m in r["mismatches"]:
            lines.append(f"|  | mismatch: {m} | | | | | | | |")
        print(f"{label} done", file=sys.stderr, flush=True)
    lines += ["", f"Target (labels, sets and spans exact; probabilities within 1e-5, fp32 and int8): "
                  f"{'met' if ok_all else 'MISSED'}.", ""]
    benchlib.write_report(args.out, lines)


if __name__ == "__main__":
    main()
