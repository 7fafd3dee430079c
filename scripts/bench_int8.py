#!/usr/bin/env python3
"""int8 vs fp32, all in one run (through scripts/bench_int8.sh, which prepares the benchmark venv
and builds frostline):

1. throughput on the 6,000-text corpus and on long documents (200-256 tokens): frostline fp32,
   frostline int8 (per-token), sentence-transformers (torch CPU) and ONNX Runtime's own dynamic
   int8 pipeline run from Python, alternating, median of reps;
2. agreement with fp32 per text (min / mean cosine) for every int8 recipe: per-token, static
   (calibrated on train texts of the three datasets), dynamic; per-channel and per-tensor;
3. downstream: frozen-backbone linear heads on Banking77, SST-2, GoEmotions-Ekman (full sets)
   with fp32, per-token and dynamic int8 vectors; MTEB replay Banking77 k = 8;
4. the frost line N = 4 on Banking77 with the frozen part in fp32 and in int8 (--quantize-frozen):
   accuracy and the time to build the token-state cache.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from bench_embed import alternate, corpus, frostline_embed, run_sentence_transformers, token_lengths  # noqa: E402

DATASETS = ["banking77", "sst2", "goemotions_ekman"]
# The recipes whose heads are trained: the default, and ORT's own dynamic pipeline.
DOWNSTREAM = ["per-token, per-channel (default)", "dynamic, per-channel"]


def quantize(fl: str, model: str, out: Path, *args: str) -> dict:
    return benchlib.run_frostline(fl, "quantize", "--force", "--model", model, "--out", out, *args)[0]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def run_file(path: Path, model: str, dataset: Path, extra: str = "") -> None:
    dev = dataset / "dev.csv"
    path.write_text(
        f'model = "{model}"\nseed = 13\n[train]\n{extra}[[tasks]]\nname = "task"\n'
        f'train = "{dataset / "train.csv"}"\n' + (f'dev = "{dev}"\n' if dev.is_file() else "")
        + f'test = "{dataset / "test.csv"}"\n',
        encoding="utf-8")


def train(fl: str, run: Path, out: Path, cache: Path, *args: str) -> dict:
    return benchlib.run_frostline(fl, "train", "--no-progress", "--force", "--run", run, "--out", out,
                                  "--cache-dir", cache, *args)[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    benchlib.common_args(ap, "frostline", "model", "st-model", "shared", "texts", "reps", "threads")
    ap.add_argument("--frost-epochs", type=int, default=3)
    ap.add_argument("--long-texts", type=int, default=600, help="documents of 200-256 tokens in the long corpus")
    benchlib.common_args(ap, "out", out={"default": "bench-results/int8.md"})
    args = ap.parse_args()
    fl, model, shared = args.frostline, str(Path(args.model).resolve()), Path(args.shared) / "data"
    work = benchlib.scratch("frostline-int8-")

    # Calibration texts for the static recipe: 512 train texts drawn evenly from the three sets
    # (the test texts measured below are never seen).
    rng = random.Random(13)
    cal: list[str] = []
    for d in DATASETS:
        with open(shared / d / "train.csv", encoding="utf-8", newline="") as f:
            texts = [r["text"] for r in csv.DictReader(f)]
        cal += rng.sample(texts, 171)
    (work / "calibration.txt").write_text("\n".join(t.replace("\n", " ") for t in cal) + "\n", encoding="utf-8")

    recipes = {
        "per-token, per-channel (default)": [],
        "per-token, per-tensor": ["--per-tensor"],
        "static, per-channel": ["--method", "static", "--calibration", str(work / "calibration.txt")],
        "static, per-tensor": ["--method", "static", "--per-tensor", "--calibration", str(work / "calibration.txt")],
        "dynamic, per-channel": ["--method", "dynamic"],
    }
    folders = {}
    for i, (name, flags) in enumerate(recipes.items()):
        folders[name] = str(work / f"int8-{i}")
        q = quantize(fl, model, Path(folders[name]), *flags)
        print(f"quantized {name}: {q['seconds']:.1f} s, {q['model_bytes'] / 1e6:.1f} MB", file=sys.stderr, flush=True)
    int8 = folders["per-token, per-channel (default)"]

    # 1. Throughput on the short test texts and on long documents, ORT's own dynamic int8 pipeline
    # (quantize_dynamic per-channel, the "dynamic" folder's graph, run from Python in sorted batches)
    # beside frostline.
    dynamic = folders["dynamic, per-channel"]
    tokenizer = f"{model}/tokenizer.json"
    corpora = {
        "short": corpus(Path(args.shared), args.texts),
        "long": benchlib.long_corpus(Path(args.shared), tokenizer, args.long_texts),
    }
    # The chip's ceilings and frostline's int8 kernel outside ONNX Runtime, before the reps and
    # after (the higher of each is taken below: the machine's speed drifts within a run).
    ceilings_before = benchlib.ceilings(args.threads)
    state: dict = {}
    throughput: dict[str, dict] = {}
    for cname, texts in corpora.items():
        corpus_file = work / f"corpus-{cname}.txt"
        corpus_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
        runners = {
            "frostline fp32": lambda st, f=corpus_file: frostline_embed(fl, model, f, args.threads, work),
            "frostline int8 (per-token)": lambda st, f=corpus_file: frostline_embed(fl, int8, f, args.threads, work),
            "sentence-transformers (torch CPU, fp32)": lambda st, t=texts: run_sentence_transformers(args.st_model, t, args.threads, st),
            "ONNX Runtime dynamic int8 (Python, sorted batches)": lambda st, t=texts: benchlib.python_ort_sorted(
                f"{dynamic}/model.onnx", tokenizer, t, args.threads, st, "dynamic"),
        }
        run_sentence_transformers(args.st_model, texts[:64], args.threads, state)
        benchlib.python_ort_sorted(f"{dynamic}/model.onnx", tokenizer, texts[:64], args.threads, state, "dynamic")
        results = alternate(runners, args.reps, state, cname)
        lengths = token_lengths(tokenizer, texts)
        throughput[cname] = {"texts": texts, "file": corpus_file, "results": results, "tokens": sum(lengths),
                             "attention_flops": benchlib.attention_flops(model, lengths),
                             "median": {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}}
    texts = corpora["short"]
    corpus_file = throughput["short"]["file"]
    results = throughput["short"]["results"]
    n = len(texts)

    # 2. Agreement per text with fp32, every recipe.
    fp32_vecs = results["frostline fp32"][-1]["vectors"]
    long_fp32 = throughput["long"]["results"]["frostline fp32"][-1]["vectors"]
    long_int8 = throughput["long"]["results"]["frostline int8 (per-token)"][-1]["vectors"]
    long_cos = cosines(long_fp32, long_int8)
    agree = {}
    for name, folder in folders.items():
        vecs = frostline_embed(fl, folder, corpus_file, args.threads, work)
        c = cosines(fp32_vecs, vecs["vectors"])
        agree[name] = (float(c.min()), float(c.mean()), vecs["seconds"])

    # 3. Downstream: frozen-backbone linear heads, fp32 vs every int8 recipe; MTEB Banking77 k=8.
    cache = work / "cache"
    heads = []
    for d in DATASETS:
        row = {"dataset": d}
        for name, folder in [("fp32", model)] + [(k, folders[k]) for k in DOWNSTREAM]:
            run = work / f"run-{d}.toml"
            run_file(run, folder, shared / d)
            r = train(fl, run, work / "ck", cache)
            t = r["tasks"][0]["test"]
            row[name] = (100 * t["accuracy"], 100 * t["macro_f1"])
            print(f"{d} {name}: acc {row[name][0]:.2f} macro-F1 {row[name][1]:.2f}", file=sys.stderr, flush=True)
        heads.append(row)
    mteb = {}
    for name, folder in [("fp32", model), ("int8 per-token", int8)]:
        r, _ = benchlib.run_frostline(fl, "mteb", "--no-progress", "--force", "--model", folder, "--cache-dir", cache,
                                      "--train", shared / "banking77/train.csv", "--test", shared / "banking77/test.csv",
                                      "--k", "8", "--out", work / "mteb")
        mteb[name] = 100 * r["mean"]

    # 4. Frost line N = 4 on Banking77, frozen part fp32 vs int8.
    frost_run = work / "run-frost.toml"
    run_file(frost_run, model, shared / "banking77",
             f"epochs = {args.frost_epochs}\nbatch_size = 32\nlr = 0.02\nencoder_lr = 5e-5\npatience = 0\n")
    frost = {}
    for name, extra in [("fp32 frozen part", []), ("int8 frozen part (--quantize-frozen)", ["--quantize-frozen"])]:
        r = train(fl, frost_run, work / "ck-frost", work / f"cache-frost-{len(frost)}",
                  "--regime", "frost-line=4", "--max-length", "64", *extra)
        t = r["tasks"][0]["test"]
        frost[name] = (100 * t["accuracy"], 100 * t["macro_f1"], r["embed_seconds"], r["training_seconds"])
        print(f"frost {name}: {frost[name]}", file=sys.stderr, flush=True)

    # The chip's ceilings, for what the 2× target would take.
    chip = benchlib.ceilings(args.threads, ceilings_before)
    kernel_rate = chip.get("int8_gmacs")
    on_vnni = benchlib.int8_on_vnni(fl, int8)
    macs_per_token = benchlib.model_flops_per_token(model) / 2

    # Report.
    cpu, flags = benchlib.cpu_info()
    lines = [
        f"# int8 vs fp32 — all-MiniLM-L6-v2, {args.threads} threads, one run",
        "",
        f"CPU: {cpu}; flags: {flags}",
        "",
    ]
    ours = "frostline int8 (per-token)"
    ort_dyn = "ONNX Runtime dynamic int8 (Python, sorted batches)"
    st_name = "sentence-transformers (torch CPU, fp32)"
    for cname, t in throughput.items():
        med, nt = t["median"], len(t["texts"])
        title = (f"{nt} test texts: Banking77, SST-2, GoEmotions-Ekman" if cname == "short"
                 else f"{nt} long documents of 200-256 tokens made from ../shared/data train texts")
        lines += [
            f"## Throughput, {cname} corpus ({title}; median of {args.reps} alternating reps)",
            "",
            "| runner | median s | texts/s | int8 speed-up |",
            "|---|---:|---:|---:|",
        ]
        for k, v in med.items():
            lines.append(f"| {k} | {v:.2f} | {nt / v:.0f} | {v / med[ours]:.2f}× |")
        lines += [
            "",
            f"- frostline int8 vs fp32 frostline: **{med['frostline fp32'] / med[ours]:.2f}×**; vs ONNX Runtime's dynamic "
            f"int8: **{med[ort_dyn] / med[ours]:.2f}×** (target ≥ 2×); vs sentence-transformers: "
            f"**{med[st_name] / med[ours]:.2f}×** (target ≥ 4×)",
            "- per-rep seconds: " + "; ".join(f"{k}: " + ", ".join(f"{r['seconds']:.2f}" for r in v)
                                              for k, v in t["results"].items()),
        ]
        if on_vnni and chip.get("int8_vnni_gmacs") and chip.get("fp32_fma_gflops"):
            ours_runs = t["results"][ours]
            outside = statistics.median(r["seconds"] - r["session_run"] for r in ours_runs)
            run = statistics.median(r["session_run"] for r in ours_runs)
            products = t["tokens"] * macs_per_token / chip["int8_vnni_gmacs"] / 1e9
            attention = t["attention_flops"] / chip["fp32_fma_gflops"] / 1e9
            lines.append(
                f"- what 2× would take: ≤ {med[ort_dyn] / 2:.2f} s in all. At the chip's ceilings "
                f"(`cargo bench --bench chip_peak`, the higher of a run before and after the reps: "
                f"{chip['int8_vnni_gmacs']:.0f} G vpdpbusd multiply-adds/s, "
                f"{chip['fp32_fma_gflops']:.0f} GFLOP/s of FMAs) the int8 products alone take {products:.2f} s and the "
                f"attention's fp32 products {attention:.2f} s; frostline spent {run:.2f} s in `session.run` and "
                f"{outside:.2f} s outside it (tokenizing, pooling, the cache). The floor with nothing but those at the "
                f"ceilings, plus the time outside: {products + attention + outside:.2f} s = "
                f"{med[ort_dyn] / (products + attention + outside):.2f}× ONNX Runtime's dynamic int8 in this run"
                + (f". frostline's int8 kernel outside ONNX Runtime (`cargo bench --bench products`: the encoder's "
                   f"products, six layers' weights cycled, a wait after each; the higher of a run before and after the "
                   f"reps) runs at {kernel_rate:.0f} G multiply-adds/s "
                   f"({100 * kernel_rate / chip['int8_vnni_gmacs']:.0f} % of the ceiling): at that rate the int8 products "
                   f"alone take {(alone := t['tokens'] * macs_per_token / kernel_rate / 1e9):.2f} s, leaving "
                   f"{med[ort_dyn] / 2 - alone - outside:.2f} s within 2× for the attention, GELU, norms and "
                   f"quantization, which took {run - alone:.2f} s here" if kernel_rate else ""))
        lines.append("")
    lines += [
        f"Long corpus, int8 per-token vs fp32 per document: min cosine {long_cos.min():.4f}, mean {long_cos.mean():.5f}",
        "",
        f"## Agreement with fp32 per text ({n} texts) and every recipe",
        "",
        "| recipe | min cosine | mean cosine | seconds (one run) | batch-independent |",
        "|---|---:|---:|---:|---|",
    ]
    for name, (lo, mean, secs) in agree.items():
        lines.append(f"| {name} | {lo:.4f} | {mean:.4f} | {secs:.2f} | {'no' if name.startswith('dynamic') else 'yes'} |")
    names = ["fp32"] + DOWNSTREAM
    lines += [
        "",
        "## Downstream: frozen-backbone linear head, test accuracy / macro-F1 (full ../shared sets)",
        "",
        "| dataset | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for row in heads:
        lines.append(f"| {row['dataset']} | " + " | ".join(f"{row[k][0]:.2f} / {row[k][1]:.2f}" for k in names) + " |")
    lines += ["", "Difference to fp32 (accuracy / macro-F1 points; target: within 0.5):", ""]
    for row in heads:
        diffs = ", ".join(f"{k}: {row[k][0] - row['fp32'][0]:+.2f} / {row[k][1] - row['fp32'][1]:+.2f}" for k in DOWNSTREAM)
        lines.append(f"- {row['dataset']}: {diffs}")
    lines += [
        "",
        "## MTEB replay, Banking77, k = 8 (mean accuracy of 10 experiments)",
        "",
        f"fp32 {mteb['fp32']:.2f}, int8 per-token {mteb['int8 per-token']:.2f} "
        f"(difference {mteb['int8 per-token'] - mteb['fp32']:+.2f}; target: within 1 point)",
        "",
        f"## Frost line N = 4, Banking77 ({args.frost_epochs} epochs, batch 32, max length 64)",
        "",
        "| frozen part | test acc | test macro-F1 | token-state cache build s | training s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (acc, f1, emb, tr) in frost.items():
        lines.append(f"| {name} | {acc:.2f} | {f1:.2f} | {emb:.1f} | {tr:.1f} |")
    (a32, f32_, e32, _), (a8, f8, e8, _) = frost.values()
    lines += [
        "",
        f"- int8 frozen part vs fp32: {a8 - a32:+.2f} acc points, {f8 - f32_:+.2f} macro-F1 (target: within 0.5); "
        f"token-state cache built {e32 / e8:.2f}× faster",
    ]
    benchlib.write_report(args.out, lines)


if __name__ == "__main__":
    main()
