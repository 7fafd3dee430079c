#!/usr/bin/env python3
"""Embedding throughput, fp32: frostline vs sentence-transformers (torch CPU) vs Python ORT.

On two corpora from ../shared/data — the short test texts and long documents of 200-256 tokens —
every runner embeds the same texts with the same thread count, alternating, for several
repetitions; the report gives medians, ratios, and frostline's model GFLOP/s over its ONNX Runtime
time against ONNX Runtime's own fp32 matmul peak measured in the same run. Run through scripts/bench_embed.sh,
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


def products_kernel(binary: str, model: str) -> str:
    """Which kernel runs the fp32 graph's weight products in frostline's CPU session, as
    `frostline doctor` reports it."""
    doctor, _ = benchlib.run_frostline(binary, "doctor", "--model", model)
    return doctor["graph"]["fp32_kernel"]


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


def token_lengths(tokenizer_file: str, texts: list[str]) -> list[int]:
    """Real (unpadded) tokens the model sees per text: special tokens counted, truncated at 256."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_file)
    tok.enable_truncation(256)
    tok.no_padding()
    return [len(e.ids) for e in tok.encode_batch(texts)]


def alternate(runners: dict, reps: int, state: dict, label: str) -> dict[str, list[dict]]:
    """Every runner once per rep, the order rotated each rep so no runner always goes first."""
    results: dict[str, list[dict]] = {k: [] for k in runners}
    order = list(runners)
    for rep in range(reps):
        shift = rep % len(order)
        for name in order[shift:] + order[:shift]:
            r = runners[name](state)
            results[name].append(r)
            print(f"{label} rep {rep + 1} {name}: {r['seconds']:.2f} s", file=sys.stderr, flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    benchlib.common_args(ap, "frostline", "model", "st-model", "shared", "texts", "reps", "threads", "out",
                         st_model={"required": True, "help": "the sentence-transformers folder (for torch)"},
                         shared={"default": str(Path(__file__).resolve().parents[2] / "shared")},
                         out={"default": "bench-results/embed.md"})
    ap.add_argument("--long-texts", type=int, default=600, help="documents of 200-256 tokens in the long corpus")
    args = ap.parse_args()

    cpu, flags = benchlib.cpu_info()
    print(f"cpu: {cpu}; flags: {flags}", file=sys.stderr, flush=True)
    tokenizer = f"{args.model}/tokenizer.json"
    corpora = {
        "short": corpus(Path(args.shared), args.texts),
        "long": benchlib.long_corpus(Path(args.shared), tokenizer, args.long_texts),
    }
    work = benchlib.scratch("frostline-bench-")
    flops = benchlib.model_flops_per_token(args.model)
    peak_before = benchlib.ort_matmul_peak(args.threads)
    ceilings_before = benchlib.ceilings(args.threads)
    state: dict = {}
    report: dict[str, dict] = {}
    for name, texts in corpora.items():
        corpus_file = work / f"{name}.txt"
        corpus_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
        runners = {
            "frostline": lambda st, f=corpus_file: frostline_embed(args.frostline, args.model, f, args.threads, work),
            "sentence-transformers": lambda st, t=texts: run_sentence_transformers(args.st_model, t, args.threads, st),
            "python-ort-sorted": lambda st, t=texts: benchlib.python_ort_sorted(f"{args.model}/model.onnx", tokenizer, t,
                                                                               args.threads, st, "fp32"),
        }
        if name == "short":
            runners["python-ort-naive"] = lambda st, t=texts: run_python_ort(args.model, t, args.threads, st)
        # Load the Python models outside the timings (frostline's model load is taken out of its
        # figure too: the summary reports it apart).
        run_sentence_transformers(args.st_model, texts[:64], args.threads, state)
        benchlib.python_ort_sorted(f"{args.model}/model.onnx", tokenizer, texts[:64], args.threads, state, "fp32")
        run_python_ort(args.model, texts[:64], args.threads, state)
        lengths = token_lengths(tokenizer, texts)
        report[name] = {"texts": texts, "tokens": sum(lengths),
                        "attention_flops": benchlib.attention_flops(args.model, lengths),
                        "results": alternate(runners, args.reps, state, name)}
    peak_after = benchlib.ort_matmul_peak(args.threads)
    peak = max(peak_before[0], peak_after[0])
    # The chip's ceiling and frostline's kernel outside ONNX Runtime, before and after, the higher.
    ceilings = benchlib.ceilings(args.threads, ceilings_before)
    fma_peak, kernel_rate = ceilings.get("fp32_fma_gflops"), ceilings.get("fp32_gflops")

    # Token-budget sweep (frostline only, short corpus, one run each): where the default comes from.
    short_file = work / "short.txt"
    sweep = {b: frostline_embed(args.frostline, args.model, short_file, args.threads, work, b)["seconds"]
             for b in (256, 512, 1024, 2048, 4096)}

    lines = [
        f"# Embedding throughput, fp32 — {args.threads} threads, median of {args.reps} alternating reps, one run",
        "",
        f"CPU: {cpu}; flags: {flags}",
        "",
        f"ONNX Runtime fp32 matmul peak, {args.threads} threads, measured before and after: "
        f"{peak_before[0]:.0f} GFLOP/s ({peak_before[1]}), {peak_after[0]:.0f} GFLOP/s ({peak_after[1]}); "
        f"the larger, **{peak:.0f} GFLOP/s**, is the reference. Model work: {flops / 1e6:.2f} MFLOP per token "
        "(the weight products; attention scores not counted). "
        + (f"The chip's own FMA ceiling (`cargo bench --bench chip_peak`, FMAs in registers, the higher of a run "
           f"before and after the reps): {fma_peak:.0f} GFLOP/s; "
           f"ONNX Runtime's peak is {100 * peak / fma_peak:.0f} % of it. " if fma_peak else "")
        +         f"The weight products run on {products_kernel(args.frostline, args.model)} (as `frostline doctor` says).",
        "",
    ]
    checks = []
    for name, rep in report.items():
        res, texts, tokens = rep["results"], rep["texts"], rep["tokens"]
        n = len(texts)
        med = {k: statistics.median(r["seconds"] for r in v) for k, v in res.items()}
        fl = res["frostline"]
        fl_run = statistics.median(r["session_run"] for r in fl)
        fl_wall = statistics.median(r["process_wall"] for r in fl)
        gflops = tokens * flops / fl_run / 1e9
        ref = res["sentence-transformers"][-1]["vectors"]
        ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
        cos = np.sum(ref * fl[-1]["vectors"], axis=1)
        title = (f"{n} test texts (Banking77, SST-2, GoEmotions-Ekman), {tokens / n:.1f} tokens on average"
                 if name == "short" else
                 f"{n} long documents of 200-256 tokens (consecutive train texts of ../shared/data joined), "
                 f"{tokens / n:.1f} tokens on average")
        lines += [
            f"## {name.capitalize()} corpus: {title}",
            "",
            "| runner | median s | texts/s | frostline speed-up |",
            "|---|---:|---:|---:|",
        ]
        labels = {
            "frostline": "frostline (length-sorted, token budget 1024)",
            "sentence-transformers": "sentence-transformers 32/batch (PyTorch CPU fp32)",
            "python-ort-sorted": "Python onnxruntime on frostline's graph, length-sorted batches of 32",
            "python-ort-naive": "Python onnxruntime, fixed 32/batch, input order",
        }
        for k, v in med.items():
            lines.append(f"| {labels[k]} | {v:.2f} | {n / v:.0f} | {v / med['frostline']:.2f}× |")
        vs_st = med["sentence-transformers"] / med["frostline"]
        share = gflops / peak
        lines += [
            "",
            f"- frostline in `session.run`: {fl_run:.2f} s of {med['frostline']:.2f} s embedding time; whole process "
            f"(start-up, model load, hashing) {fl_wall:.2f} s",
            f"- model GFLOP/s over ONNX Runtime time: {tokens} tokens × {flops / 1e6:.2f} MFLOP / {fl_run:.2f} s = "
            f"**{gflops:.0f} GFLOP/s = {100 * share:.0f} % of the matmul peak** (target ≥ 85 %)",
            *([f"- the ceiling: at the chip's FMA rate the weight products and the attention's own products "
               f"({rep['attention_flops'] / 1e9:.0f} GFLOP) would take "
               f"{(floor := (tokens * flops + rep['attention_flops']) / fma_peak / 1e9):.2f} s, so no fp32 run of this "
               f"graph can pass {100 * tokens * flops / floor / 1e9 / peak:.0f} % of the matmul peak; 85 % needs "
               f"≤ {tokens * flops / (0.85 * peak) / 1e9:.2f} s in `session.run`, {fl_run:.2f} s measured"]
              if fma_peak else []),
            *([f"- frostline's fp32 kernel outside ONNX Runtime (`cargo bench --bench products`: the encoder's "
               f"products, six layers' weights cycled, a wait after each) runs at {kernel_rate:.0f} GFLOP/s"
               + (f" ({100 * kernel_rate / fma_peak:.0f} % of the FMA ceiling)" if fma_peak else "")
               + f", the higher of a run before and after the reps: at that rate the weight products alone take {(alone := tokens * flops / kernel_rate / 1e9):.2f} s "
               f"of the {fl_run:.2f} s in `session.run`, leaving {fl_run - alone:.2f} s to the attention, GELU and "
               f"norms; within 85 % they would have {tokens * flops / (0.85 * peak) / 1e9 - alone:.2f} s"]
              if kernel_rate else []),
            f"- vs sentence-transformers: **{vs_st:.2f}×** (target ≥ 1.5×)",
            f"- agreement with sentence-transformers: min cosine {cos.min():.6f}, mean {cos.mean():.6f}",
            "",
        ]
        checks.append((name, share, vs_st))
    lines += [
        "Token budget (padded tokens per batch) vs frostline seconds on the short corpus, one run each: "
        + ", ".join(f"{b}: {v:.2f}" for b, v in sweep.items()),
        "",
        "Targets: " + "; ".join(f"{name}: {100 * share:.0f} % of peak (≥ 85 %), {vs_st:.2f}× sentence-transformers (≥ 1.5×)"
                                for name, share, vs_st in checks),
        "",
        "Per-rep seconds: " + "; ".join(f"{c} {k}: " + ", ".join(f"{r['seconds']:.2f}" for r in v)
                                        for c, rep in report.items() for k, v in rep["results"].items()),
    ]
    benchlib.write_report(args.out, lines)


if __name__ == "__main__":
    main()
