#!/usr/bin/env python3
"""The AMX bf16 kernel next to the AVX512-BF16 and fp32 ones, in one run on one machine. Run
through scripts/bench_amx.sh.

1. GFLOP/s of each BERT-layer product (benches/engine.rs, 512 tokens, best of 5): fp32 AVX-512,
   bf16 on AVX512-BF16 (`vdpbf16ps`), bf16 on AMX (`tdpbf16ps`).
2. What it buys a training run: the contrastive stage of `contrastive,frost-line=0` (SetFit's
   recipe, all six layers) on SST-2 with k = 8 rows per label, per seed, the three kernels in
   alternating order (fp32 = `train.precision=fp32`; AVX512-BF16 = bf16 with `FROSTLINE_AMX=off`;
   AMX = bf16), with the test accuracy each reached.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

KERNELS = [("fp32", "fp32", "on"), ("bf16 AVX512-BF16", "bf16", "off"), ("bf16 AMX", "bf16", "on")]


def products(tokens: int) -> dict[tuple[str, str], dict[str, float]]:
    out: dict[tuple[str, str], dict[str, float]] = {}
    for r in benchlib.engine_gflops(tokens):
        out.setdefault((r["shape"], r["product"]), {})[r["kernel"]] = float(r["gflops"])
    if not any("bf16 amx" in k for k in out.values()):
        sys.exit("this run needs the AMX kernel, which did not run (see the line above)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    benchlib.common_args(ap, "frostline", "model", "shared", "work", "out")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=512)
    args = ap.parse_args()
    cpu, flags = benchlib.cpu_info()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    lines = ["# The AMX bf16 kernel vs AVX512-BF16 and fp32", "", f"- CPU: **{cpu}**",
             f"- flags: {flags}", f"- threads: {os.cpu_count()} (`MATMUL_NUM_THREADS`: every core)", "",
             f"## 1. GFLOP/s per product ({args.tokens} tokens, best of 5)", "",
             "| shape | product | fp32 | bf16 AVX512-BF16 | bf16 AMX | AMX / fp32 | AMX / AVX512-BF16 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    ratios = []
    for (shape, product), g in products(args.tokens).items():
        r = g["bf16 amx"] / g["fp32"]
        ratios.append(r)
        lines.append(f"| {shape} | {product} | {g['fp32']:.0f} | {g['bf16']:.0f} | {g['bf16 amx']:.0f} "
                     f"| {r:.2f} | {g['bf16 amx'] / g['bf16']:.2f} |")
    lines += ["", f"AMX / fp32: {min(ratios):.2f}–{max(ratios):.2f} (median {statistics.median(ratios):.2f}).", ""]

    data = Path(args.shared) / "data" / "sst2"
    secs: dict[str, list[float]] = {k[0]: [] for k in KERNELS}
    accs: dict[str, list[float]] = {k[0]: [] for k in KERNELS}
    for seed in range(42, 42 + args.seeds):
        for name, precision, amx in KERNELS:
            os.environ["FROSTLINE_AMX"] = amx
            summary, _ = benchlib.run_frostline(
                args.frostline, "fewshot", "--no-progress", "--train", data / "train.csv",
                "--test", data / "test.csv", "--model", args.model, "--k", 8, "--seeds", 1,
                "--set", f"seed={seed}", "--set", f"train.precision={precision}",
                "--regime", "contrastive,frost-line=0", "--out", work / f"sst2-{seed}", "--force")
            row = summary["rows"][0]
            secs[name].append(row["train_seconds"])
            accs[name].append(row["accuracy"])
            print(f"seed {seed} {name}: {row['train_seconds']:.2f} s, accuracy {row['accuracy']:.4f}", flush=True)
    os.environ.pop("FROSTLINE_AMX", None)
    base = statistics.median(secs["fp32"])
    lines += ["## 2. The contrastive stage: SST-2, k = 8, `contrastive,frost-line=0`", "",
              f"{args.seeds} seeds (42, 43, ...), the kernels alternating within each seed; seconds "
              "of the contrastive stage + head (median over seeds) and test accuracy (mean).", "",
              "| kernel | seconds (median) | vs fp32 | accuracy % (mean) |", "|---|---:|---:|---:|"]
    for name, _, _ in KERNELS:
        m = statistics.median(secs[name])
        lines.append(f"| {name} | {m:.2f} | {m / base:.2f}× | {100 * statistics.mean(accs[name]):.2f} |")
    benchlib.write_report(args.out, lines)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
