#!/usr/bin/env python3
"""Embedding throughput: frostline vs sentence-transformers (torch CPU) vs naive Python ORT.

All three embed the same texts from ../shared/data with the same thread count, alternating, for
several repetitions; the table reports medians and ratios. Run through scripts/bench_embed.sh,
which prepares the benchmark venv (torch) and builds frostline.

    bench_embed.py --frostline target/release/frostline --model models/all-MiniLM-L6-v2 \
        --texts 6000 --reps 3 --threads 2 --out bench-results/embed.md
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402


def corpus(shared: Path, n: int) -> list[str]:
    texts: list[str] = []
    for rel in ["banking77/test.csv", "sst2/test.csv", "goemotions_ekman/test.csv"]:
        with open(shared / "data" / rel, encoding="utf-8", newline="") as f:
            texts += [r["text"] for r in csv.DictReader(f)]
    if len(texts) < n:
        sys.exit(f"only {len(texts)} texts available, asked for {n}")
    return texts[:n]


def frostline_embed(binary: str, model: str, corpus_file: Path, threads: int, workdir: Path, budget: int = 1024) -> dict:
    cache = Path(tempfile.mkdtemp(dir=workdir))  # fresh cache: every rep really embeds
    out = workdir / "frostline.npy"
    s, wall = benchlib.run_frostline(binary, "embed", "--no-progress", "--model", model, "--input", corpus_file, "--output", out,
                                     "--cache-dir", cache, "--threads", threads, "--batch-tokens", budget)
    seconds = s["seconds"] - s["load_seconds"]
    ort = s["ort_seconds"]
    waste = s["padding_waste_pct"]
    vecs = np.load(out)
    return {"seconds": seconds, "process_wall": wall, "session_run": ort, "waste_pct": waste, "vectors": vecs}


def run_sentence_transformers(model_dir: str, texts: list[str], threads: int, state: dict) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    if "st" not in state:
        state["st"] = SentenceTransformer(model_dir, device="cpu")
    t0 = time.perf_counter()
    vecs = state["st"].encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=False)
    return {"seconds": time.perf_counter() - t0, "vectors": vecs}


def run_python_ort(model: str, texts: list[str], threads: int, state: dict) -> dict:
    """The naive way: input order, fixed batches of 32, each padded to its longest row."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    if "ort" not in state:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        state["ort"] = ort.InferenceSession(f"{model}/model.onnx", opts, providers=["CPUExecutionProvider"])
        tok = Tokenizer.from_file(f"{model}/tokenizer.json")
        tok.enable_truncation(256)
        tok.enable_padding()  # to the batch's longest
        state["tok"] = tok
    sess, tok = state["ort"], state["tok"]
    out, padded, real, run_s = [], 0, 0, 0.0
    t0 = time.perf_counter()
    for i in range(0, len(texts), 32):
        enc = tok.encode_batch(texts[i:i + 32])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        padded += ids.size
        real += int(mask.sum())
        t1 = time.perf_counter()
        h = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        run_s += time.perf_counter() - t1
        m = mask[:, :, None].astype(np.float32)
        v = (h * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
        out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
    return {"seconds": time.perf_counter() - t0, "session_run": run_s, "waste_pct": 100 * (padded - real) / padded,
            "vectors": np.concatenate(out)}


def main() -> None:
    ap = argparse.ArgumentParser()
    benchlib.common_args(ap, "frostline", "model", "st-model", "shared", "texts", "reps", "threads", "out",
                         st_model={"required": True, "help": "the sentence-transformers folder (for torch)"},
                         shared={"default": str(Path(__file__).resolve().parents[2] / "shared")},
                         out={"default": "bench-results/embed.md"})
    args = ap.parse_args()

    texts = corpus(Path(args.shared), args.texts)
    work = Path(tempfile.mkdtemp(prefix="frostline-bench-"))
    corpus_file = work / "corpus.txt"
    corpus_file.write_text("\n".join(texts) + "\n", encoding="utf-8")

    runners = {
        "frostline": lambda st: frostline_embed(args.frostline, args.model, corpus_file, args.threads, work),
        "sentence-transformers": lambda st: run_sentence_transformers(args.st_model, texts, args.threads, st),
        "python-ort-naive": lambda st: run_python_ort(args.model, texts, args.threads, st),
    }
    state: dict = {}
    # Load the Python models outside the timings (frostline's own model load is taken out of its
    # figure too: the summary reports it apart).
    run_sentence_transformers(args.st_model, texts[:64], args.threads, state)
    run_python_ort(args.model, texts[:64], args.threads, state)
    results: dict[str, list[dict]] = {k: [] for k in runners}
    order = list(runners)
    for rep in range(args.reps):
        for name in order[rep % 3:] + order[:rep % 3]:  # alternate who goes first
            r = runners[name](state)
            results[name].append(r)
            print(f"rep {rep + 1} {name}: {r['seconds']:.2f} s", file=sys.stderr, flush=True)

    # Token-budget sweep (frostline only): where the default comes from.
    sweep = {b: [] for b in (256, 512, 1024, 2048, 4096)}
    for rep in range(args.reps):
        for b in sweep:
            sweep[b].append(frostline_embed(args.frostline, args.model, corpus_file, args.threads, work, b)["seconds"])

    med = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}
    fl = results["frostline"]
    fl_run = statistics.median(r["session_run"] for r in fl)
    fl_wall = statistics.median(r["process_wall"] for r in fl)
    ref = results["sentence-transformers"][-1]["vectors"]
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    got = fl[-1]["vectors"]
    min_cos = float(np.min(np.sum(ref * got, axis=1)))

    n = len(texts)
    rows = [
        ("frostline (length-sorted, token budget 1024)", med["frostline"], statistics.median(r["waste_pct"] for r in fl)),
        ("sentence-transformers 32/batch (torch CPU)", med["sentence-transformers"], float("nan")),
        ("Python onnxruntime, fixed 32/batch, input order", med["python-ort-naive"],
         statistics.median(r["waste_pct"] for r in results["python-ort-naive"])),
    ]
    lines = [
        f"# Embedding throughput — {n} texts from ../shared/data (Banking77, SST-2, GoEmotions test), "
        f"{args.threads} threads, median of {args.reps} alternating reps",
        "",
        "| runner | median s | sentences/s | frostline speed-up | padded-token waste |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, s, waste in rows:
        w = "n/a (sorts by length inside encode)" if waste != waste else f"{waste:.1f} %"
        lines.append(f"| {label} | {s:.2f} | {n / s:.0f} | {s / med['frostline']:.2f}× | {w} |")
    lines += [
        "",
        f"- frostline time in `session.run`: {fl_run:.2f} s of {med['frostline']:.2f} s embedding time "
        f"(end-to-end / session.run = {med['frostline'] / fl_run:.3f}); whole process incl. start-up, "
        f"model load and hashing: {fl_wall:.2f} s",
        f"- agreement: min cosine frostline vs sentence-transformers over {n} texts = {min_cos:.6f}",
        f"- targets: ≥ 2.0× sentence-transformers (got {med['sentence-transformers'] / med['frostline']:.2f}×), "
        f"≥ 1.3× naive Python ORT (got {med['python-ort-naive'] / med['frostline']:.2f}×), "
        f"end-to-end within 10 % of session.run (got {100 * (med['frostline'] / fl_run - 1):.1f} %), "
        f"waste ≤ 5 % (got {rows[0][2]:.1f} %)",
        "",
        "Token budget (padded tokens per batch) vs frostline seconds, median of reps: "
        + ", ".join(f"{b}: {statistics.median(v):.2f}" for b, v in sweep.items()),
        "",
        "Per-rep seconds: " + "; ".join(f"{k}: " + ", ".join(f"{r['seconds']:.2f}" for r in v) for k, v in results.items()),
    ]
    benchlib.write_report(args.out, lines)


if __name__ == "__main__":
    main()
