"""The native engine's speed and accuracy (issue: AVX-512 fp32 and bf16 kernels), one run:

1. GFLOP/s of a BERT layer's products (tokens x in -> out; forward x.W^T and both backward
   products) for the old matrixmultiply path, frostline's fp32 and bf16 kernels
   (`cargo bench --bench engine`), and PyTorch fp32 and bf16 autocast on the same shapes.
2. Time per epoch against PyTorch training the same layers with the same recipe (the PyTorch
   code of bench_ner.py and bench_frost.py), fp32 and bf16 each:
   WNUT-17 with frost line N = 3 read at layer 6, and Banking77 with frost-line=0.
3. Accuracy: frostline fp32 and bf16 on the full recipe, and bf16 once more (same test metrics
   expected, bit for bit).

Writes bench-results/engine.md.
"""

import argparse
import csv
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_frost  # noqa: E402
import benchlib  # noqa: E402
import bench_ner  # noqa: E402


def torch_gflops(tokens: int, shapes, threads: int) -> dict:
    import torch
    torch.set_num_threads(threads)
    res = {}
    g = torch.Generator().manual_seed(0)
    for inp, out in shapes:
        x, w, dy = (torch.rand(*s, generator=g) - 0.5 for s in ((tokens, inp), (out, inp), (tokens, out)))
        flops = 2.0 * tokens * inp * out
        for name, bf16 in (("torch fp32", False), ("torch bf16", True)):
            products = {"forward x.Wt": lambda: x @ w.T, "backward dy.W": lambda: dy @ w, "backward dyT.x": lambda: dy.T @ x}
            for product, f in products.items():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    f()
                    best = float("inf")
                    for _ in range(5):
                        t0 = time.perf_counter()
                        f()
                        best = min(best, time.perf_counter() - t0)
                res[(f"{tokens}x{inp}x{out}", product, name)] = flops / best / 1e9
    return res


def frostline_run(fl: str, run: Path, out: Path, cache: Path, sets: list[str], *extra: str) -> dict:
    args = ["--no-progress", "--run", run, "--out", out, "--force", "--cache-dir", cache, *extra]
    for s in sets:
        args += ["--set", s]
    j, _ = benchlib.run_frostline(fl, "train", *args)
    log = list(csv.DictReader(open(out / "training_log.csv")))
    j["epoch_s"] = statistics.median(float(r["train_seconds"]) for r in log)
    j["weights"] = (out / "heads.safetensors").read_bytes() if (out / "heads.safetensors").exists() else b""
    return j


def main() -> None:
    ap = argparse.ArgumentParser()
    benchlib.common_args(ap, "frostline", "model", "st-model", "shared", "work", "threads")
    ap.add_argument("--tokens", type=int, default=512, help="rows of the GFLOP/s products (a batch's tokens)")
    ap.add_argument("--torch-epochs", type=int, default=1, help="PyTorch epochs timed per configuration")
    benchlib.common_args(ap, "out", out={"default": "bench-results/engine.md"})
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    model_name, flags = benchlib.cpu_info()
    lines = ["# The native engine: AVX-512 fp32 and bf16 kernels vs PyTorch", "",
             "Written by `scripts/bench_engine.sh`, one run, everything side by side on one machine.", "",
             f"- CPU: **{model_name}**", f"- flags: {flags}", f"- threads: {a.threads} (frostline `MATMUL_NUM_THREADS`, PyTorch `set_num_threads`)", ""]

    # 1. GFLOP/s.
    shapes = [(384, 1536), (1536, 384), (384, 384), (768, 3072), (3072, 768), (768, 768)]
    rows = benchlib.engine_gflops(a.tokens, a.threads)
    torch_res = torch_gflops(a.tokens, shapes, a.threads)
    ours = {(r["shape"], r["product"], r["kernel"]): float(r["gflops"]) for r in rows}
    # The bf16 kernel training runs: AMX where benches/engine.rs ran it, else AVX512-BF16.
    bf16_kernel = "bf16 amx" if any(r["kernel"] == "bf16 amx" for r in rows) else "bf16"
    bf16_name = "AMX `tdpbf16ps`" if bf16_kernel == "bf16 amx" else "AVX512-BF16 `vdpbf16ps`"
    lines += [f"## 1. GFLOP/s per product ({a.tokens} tokens)", "",
              "tokens x in x out; forward = x.W^T, backward = dy.W (dx) and dy^T.x (dW). Best of 5 after a warm-up. "
              f"bf16: bf16 inputs, fp32 accumulation (frostline: {bf16_name}, the kernel `precision = \"bf16\"` runs here; PyTorch: `torch.autocast(\"cpu\", bfloat16)`, oneDNN).", "",
              "| shape | product | matrixmultiply (old) | frostline fp32 | frostline bf16 | PyTorch fp32 | PyTorch bf16 | fp32 / PyTorch fp32 | bf16 / frostline fp32 | bf16 / PyTorch bf16 |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    worst_fp32, worst_bf16 = float("inf"), float("inf")
    for key in dict.fromkeys((r["shape"], r["product"]) for r in rows):
        old, f32, b16 = (ours.get((*key, k), float("nan")) for k in ("matrixmultiply", "fp32", bf16_kernel))
        t32, t16 = torch_res[(*key, "torch fp32")], torch_res[(*key, "torch bf16")]
        worst_fp32, worst_bf16 = min(worst_fp32, f32 / t32), min(worst_bf16, b16 / f32)
        lines.append(f"| {key[0]} | {key[1]} | {old:.0f} | {f32:.0f} | {b16:.0f} | {t32:.0f} | {t16:.0f} | "
                     f"{f32 / t32:.2f} | {b16 / f32:.2f} | {b16 / t16:.2f} |")
    lines += ["", f"Lowest frostline fp32 / PyTorch fp32: **{worst_fp32:.2f}** (target ≥ 0.80). "
              f"Lowest frostline bf16 / frostline fp32: **{worst_bf16:.2f}** (target ≥ 2 with AVX512-BF16, ≥ 4 with AMX).", ""]
    print("\n".join(lines), file=sys.stderr, flush=True)

    # 2 and 3. Epochs.
    fl, model = a.frostline, Path(a.model).resolve()
    results = []
    # WNUT-17, frost line 3 read at layer 6 (bench_ner.py's recipe).
    wnut = Path(a.shared) / "data" / "wnut17"
    run = work / "ner.toml"
    run.write_text(f'model = "{model}"\nseed = 13\n[train]\nregime = "frost-line=3"\nhead = "linear"\nepochs = 4\n'
                   f'batch_size = 16\nencoder_lr = 1e-4\nlr = 1e-3\npatience = 0\n'
                   f'[[tasks]]\nname = "ner"\nkind = "token-classification"\ntoken_layer = 6\n'
                   f'train = "{wnut / "train.conll"}"\ndev = "{wnut / "dev.conll"}"\ntest = "{wnut / "test.conll"}"\n')
    fl_runs = {p: frostline_run(fl, run, work / f"ner-{p}", work / "cache-ner", [f"train.precision={p.split('-')[0]}"])
               for p in ("fp32", "bf16", "bf16-rerun")}
    torch_s = {}
    for bf16 in (False, True):
        _, per_epoch = bench_ner.torch_finetune(str(model), wnut, 3, 6, a.torch_epochs, 16, 1e-4, 1e-3, 0.01, 0.05, 1.0, 13, bf16=bf16)
        torch_s[bf16] = statistics.median(per_epoch)
    metric = lambda j: 100 * j["tasks"][0]["test"]["entity_f1"]
    results.append(("WNUT-17, frost line 3 read at layer 6 (4 epochs, batch 16)", "test entity F1", fl_runs, torch_s, metric, 0.6, 45.77))
    print(f"WNUT done: {[(k, v['epoch_s'], metric(v)) for k, v in fl_runs.items()]} torch {torch_s}", file=sys.stderr, flush=True)

    # Banking77, frost-line=0 (bench_frost.py's recipe and dev carve).
    b77 = Path(a.shared) / "data" / "banking77"
    texts, labels = bench_frost.read(b77 / "train.csv")
    idx = list(range(len(texts)))
    random.Random(13).shuffle(idx)
    cut = len(idx) // 10
    dev_i, tr_i = sorted(idx[:cut]), sorted(idx[cut:])
    bench_frost.write(work / "b77-train.csv", [texts[i] for i in tr_i], [labels[i] for i in tr_i])
    bench_frost.write(work / "b77-dev.csv", [texts[i] for i in dev_i], [labels[i] for i in dev_i])
    run = work / "b77.toml"
    run.write_text(f'model = "{model}"\nseed = 13\n[train]\nregime = "frost-line=0"\nepochs = 3\nbatch_size = 32\n'
                   f'lr = 0.02\nencoder_lr = 5e-5\npatience = 0\n'
                   f'[[tasks]]\nname = "task"\ntrain = "{work / "b77-train.csv"}"\ndev = "{work / "b77-dev.csv"}"\ntest = "{b77 / "test.csv"}"\n')
    fl_runs = {p: frostline_run(fl, run, work / f"b77-{p}", work / "cache-b77", [f"train.precision={p.split('-')[0]}"], "--max-length", "64")
               for p in ("fp32", "bf16", "bf16-rerun")}
    data = {"train": bench_frost.read(work / "b77-train.csv"), "dev": bench_frost.read(work / "b77-dev.csv"),
            "test": bench_frost.read(b77 / "test.csv")}
    torch_s = {}
    for bf16 in (False, True):
        pt = bench_frost.torch_finetune(a.st_model, data, 0, a.torch_epochs, 32, 64, 5e-5, 2e-2, a.threads, 13, None, bf16=bf16)
        torch_s[bf16] = statistics.median(pt["epoch_seconds"])
    metric = lambda j: 100 * j["tasks"][0]["test"]["accuracy"]
    results.append(("Banking77, frost-line=0 (all six layers; 3 epochs, batch 32, max length 64)", "test accuracy", fl_runs, torch_s, metric, 0.35, None))

    lines += ["## 2. Time per epoch vs PyTorch, and 3. accuracy", "",
              f"frostline: the full recipe, the training steps of each epoch (median). PyTorch: the same layers, recipe and batches "
              f"(bench_ner.py / bench_frost.py), {a.torch_epochs} epoch(s) timed per precision, steps alone. "
              "frostline's bf16 runs score dev and test in fp32 at the end (as predict and eval do).", "",
              "| run | metric | frostline fp32 | frostline bf16 | bf16 rerun | s/epoch fp32 | s/epoch bf16 | PyTorch fp32 s/epoch | PyTorch bf16 s/epoch | fp32 / PyTorch fp32 | bf16 / PyTorch bf16 |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for name, metric_name, fl_runs, torch_s, metric, target, before in results:
        f32, b16, again = fl_runs["fp32"], fl_runs["bf16"], fl_runs["bf16-rerun"]
        r32, r16 = f32["epoch_s"] / torch_s[False], b16["epoch_s"] / torch_s[True]
        lines.append(f"| {name} | {metric_name} | {metric(f32):.2f} | {metric(b16):.2f} | {metric(again):.2f} | "
                     f"{f32['epoch_s']:.1f} | {b16['epoch_s']:.1f} | {torch_s[False]:.1f} | {torch_s[True]:.1f} | {r32:.2f} | {r16:.2f} |")
        notes.append(f"- {name}: fp32 epoch {r32:.2f}× PyTorch fp32 (target ≤ {target}: {'met' if r32 <= target else 'not met'}); "
                     f"bf16 {r16:.2f}× PyTorch bf16 (target ≤ 0.5: {'met' if r16 <= 0.5 else 'not met'}); "
                     f"bf16 − fp32 {metric(b16) - metric(f32):+.2f} points (target within 0.3: {'met' if abs(metric(b16) - metric(f32)) <= 0.3 else 'not met'}); "
                     f"bf16 rerun {'identical weights and metrics' if again['weights'] == b16['weights'] and metric(again) == metric(b16) else 'DIFFERS'}"
                     + (f"; fp32 − bench-results/ner.md's {before} (old engine, another machine): {metric(f32) - before:+.2f}" if before else ""))
    lines += ["", *notes, ""]
    benchlib.write_report(a.out, lines)


if __name__ == "__main__":
    main()
