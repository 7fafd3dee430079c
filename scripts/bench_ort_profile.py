#!/usr/bin/env python3
"""Where ONNX Runtime's time goes in frostline's fused graphs, op type by op type (ORT's own
profiler, kernel time), for the fp32 and the int8 (per-token) graph on the short test texts and on
long documents; and what that means for the fp32 throughput target: the model GFLOP/s frostline
could reach if every op but the weight products took no time at all. The graphs frostline runs
are profiled inside `frostline embed` (FROSTLINE_ORT_PROFILE; on CPU both graphs run rewritten
onto frostline's attention, GELU and LayerNorm kernels, the int8 one also onto its fused
quantization and, with AMX-INT8, its int8 product kernel, src/backbone/own_graph.rs; frostline's
operators load nowhere else); the portable fp32 and int8 graphs (ONNX Runtime's ops
alone, as `export --with-heads` writes them) from Python, beside them. Through
scripts/bench_ort_profile.sh; writes bench-results/ort_profile.md.

    bench_ort_profile.py --frostline target/release/frostline --model models/all-MiniLM-L6-v2 \
        --int8 INT8_FOLDER --portable PORTABLE.onnx --shared ../shared --threads 2 \
        --out bench-results/ort_profile.md
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from bench_embed import corpus  # noqa: E402



def matmul_flops_per_token(graph: str) -> float:
    """FLOPs per token of the graph's MatMul nodes with a 2-D weight (2·K·N each): in the fp32
    graph the attention output and FFN products; the QKV product runs inside `Attention`."""
    import onnx

    model = onnx.load(graph, load_external_data=False)
    dims = {i.name: list(i.dims) for i in model.graph.initializer}
    return sum(2 * dims[n.input[1]][0] * dims[n.input[1]][1] for n in model.graph.node
               if n.op_type == "MatMul" and len(dims.get(n.input[1], [])) == 2)


def kernel_times(events: list) -> dict:
    """Kernel microseconds per op type in an ONNX Runtime profile."""
    per_op: dict[str, float] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    return dict(per_op)


def profile_frostline(binary: str, folder: str, texts: list[str], threads: int, work: Path) -> dict:
    """Kernel microseconds per op type of one `frostline embed` of `texts` (its own batching:
    length-sorted, 1024 padded tokens per batch), from ORT's profile of frostline's session."""
    run = Path(tempfile.mkdtemp(dir=work))
    (run / "texts.txt").write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n", encoding="utf-8")
    env = dict(os.environ, FROSTLINE_ORT_PROFILE=str(run / "ort"))
    subprocess.run([binary, "embed", "--no-progress", "--model", folder, "--input", run / "texts.txt",
                    "--output", run / "v.npy", "--cache-dir", run / "cache", "--threads", str(threads)],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    profiles = sorted(run.glob("ort*.json"))
    if len(profiles) != 1:
        sys.exit(f"frostline embed left {len(profiles)} ONNX Runtime profiles in {run}, expected one")
    return kernel_times(json.loads(profiles[0].read_text()))


def profile(graph: str, tokenizer: str, texts: list[str], threads: int, work: Path) -> dict:
    """Kernel microseconds per op type over one pass of `texts` through `graph` in Python's ONNX
    Runtime (length-sorted batches of 32)."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.enable_profiling = True
    opts.profile_file_prefix = str(work / "ort")
    sess = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(tokenizer)
    tok.enable_truncation(256)
    tok.no_padding()
    enc = tok.encode_batch(texts)
    for _, ids, mask in benchlib.sorted_batches(enc):
        sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    return kernel_times(json.loads(Path(sess.end_profiling()).read_text()))


def ceilings(threads: int, before: dict | None = None) -> dict:
    """ONNX Runtime's fp32 and int8 product peaks (`ort_fp32`, `ort_int8`: rate and shape), the
    chip's ceilings and frostline's kernels (`benchlib.ceilings`), measured now; with `before`,
    the higher of each."""
    now = {**benchlib.ceilings(threads, before),
           "ort_fp32": benchlib.ort_matmul_peak(threads), "ort_int8": benchlib.ort_int8_matmul_peak(threads)}
    if before is not None:
        for key in ("ort_fp32", "ort_int8"):
            now[key] = max(now[key], before[key])
    return now


def main() -> None:
    ap = argparse.ArgumentParser()
    benchlib.common_args(ap, "frostline", "model", "shared", "texts", "threads", "out",
                         shared={"default": str(Path(__file__).resolve().parents[2] / "shared")},
                         out={"default": "bench-results/ort_profile.md"})
    ap.add_argument("--int8", required=True, help="an int8 (per-token) folder made from --model")
    ap.add_argument("--portable", required=True, help="the same int8 graph on ONNX Runtime's ops alone")
    ap.add_argument("--long-texts", type=int, default=600)
    args = ap.parse_args()

    cpu, flags = benchlib.cpu_info()
    tokenizer = f"{args.model}/tokenizer.json"
    corpora = {
        "short": corpus(Path(args.shared), args.texts),
        "long": benchlib.long_corpus(Path(args.shared), tokenizer, args.long_texts),
    }
    work = benchlib.scratch("frostline-profile-")
    flops = benchlib.model_flops_per_token(args.model)
    on_vnni = benchlib.int8_on_vnni(args.frostline, args.int8)
    # The ceilings before and after the profiles, the higher of each: the machine's speed drifts
    # within a run, and a ceiling is what ORT, the chip or a kernel did at its best in it.
    before = ceilings(args.threads)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer)
    tok.enable_truncation(256)
    tok.no_padding()
    runs = [
        ("fp32", lambda t: profile_frostline(args.frostline, args.model, t, args.threads, work), f"{args.model}/model.onnx"),
        # The same graph on ONNX Runtime's own kernels (what frostline ran before its CPU rewrite).
        ("fp32, portable (ONNX Runtime's kernels, from Python)",
         lambda t: profile(f"{args.model}/model.onnx", tokenizer, t, args.threads, work), f"{args.model}/model.onnx"),
        ("int8 per-token, frostline's fused kernels", lambda t: profile_frostline(args.frostline, args.int8, t, args.threads, work), None),
        ("int8 per-token, portable (ONNX Runtime's ops alone)", lambda t: profile(args.portable, tokenizer, t, args.threads, work), None),
    ]
    measured = []
    for cname, texts in corpora.items():
        lengths = [len(e.ids) for e in tok.encode_batch(texts)]
        for gname, run, graph in runs:
            measured.append((cname, len(texts), lengths, gname, graph, run(texts)))
    ceil = ceilings(args.threads, before)
    peak, shape = ceil["ort_fp32"]
    int8_peak, int8_shape = ceil["ort_int8"]
    chip = kernels = ceil
    fma_peak, vnni_peak = chip.get("fp32_fma_gflops"), chip.get("int8_vnni_gmacs")
    lines = [
        f"# Where ONNX Runtime's time goes in frostline's fused graphs — {args.threads} threads, one run",
        "",
        f"CPU: {cpu}; flags: {flags}",
        "",
        f"ONNX Runtime fp32 matmul peak (the higher of a run before and after the profiles, as every ceiling here): {peak:.0f} GFLOP/s ({shape}); its best int8 product rate "
        f"(`MatMulIntegerToFloat`, the same shapes): {int8_peak:.0f} G multiply-adds/s ({int8_shape}). "
        f"The chip's own ceilings with {args.threads} threads (`cargo bench --bench chip_peak`: FMAs and "
        "`vpdpbusd` in registers, no memory traffic): "
        + (f"fp32 {fma_peak:.0f} GFLOP/s ({chip['fp32_fma_isa']} FMA; ONNX Runtime's matmul peak is "
           f"{100 * peak / fma_peak:.0f} % of it)" if fma_peak else "no fp32 FMA")
        + (f", int8 {vnni_peak:.0f} G multiply-adds/s (AVX512-VNNI; ONNX Runtime's best int8 rate is "
           f"{100 * int8_peak / vnni_peak:.0f} % of it). " if vnni_peak else ", no AVX512-VNNI. ")
        + ("frostline's own product kernels outside ONNX Runtime (`cargo bench --bench products`: the encoder's "
           "weight shapes, six layers' weights cycled, 1,024 rows split between the threads, a wait after each "
           "product): "
           + ", ".join(x for x in (
               f"fp32 {kernels['fp32_gflops']:.0f} GFLOP/s" if kernels.get("fp32_gflops") else "",
               f"int8 {kernels['int8_gmacs']:.0f} G multiply-adds/s ({kernels['int8_kernel']})"
               if kernels.get("int8_gmacs") else "") if x)
           + ". " if kernels.get("fp32_gflops") or kernels.get("int8_gmacs") else "")
        + f"Model work {flops / 1e6:.2f} MFLOP per token "
        "(weight products). Kernel time from ONNX Runtime's profiler: inside `frostline embed` "
        "(length-sorted, 1024 padded tokens per batch) for the graphs frostline runs, from Python "
        "(length-sorted batches of 32) for the portable fp32 and int8 graphs.",
        "",
    ]
    for cname, n_texts, lengths, gname, graph, per_op in measured:
        tokens = sum(lengths)
        att_flops = benchlib.attention_flops(args.model, lengths)
        total = sum(per_op.values())
        lines += [
            f"## {gname}, {cname} corpus ({n_texts} texts, {tokens / n_texts:.1f} tokens on average)",
            "",
            "| op | kernel s | share |",
            "|---|---:|---:|",
        ]
        for op, us in sorted(per_op.items(), key=lambda kv: -kv[1]):
            if us / total >= 0.002:
                lines.append(f"| {op} | {us / 1e6:.3f} | {100 * us / total:.1f} % |")
        achieved = tokens * flops / (total / 1e6) / 1e9
        lines += ["", f"- all kernels: {total / 1e6:.2f} s = {achieved:.0f} GFLOP/s of model work"
                  + (f" = **{100 * achieved / peak:.0f} % of the fp32 matmul peak**" if gname == "fp32" else "")
                  + (f" = {100 * achieved / peak:.0f} % of the fp32 matmul peak" if gname.startswith("fp32,") else "")]
        if graph:
            # The weight products' own rate. On CPU frostline splits each Attention into its
            # QKV product and its own AttentionCore (src/backbone/own_graph.rs), so every
            # weight product is a product node — `MatMulF32` where frostline's fp32 kernel
            # takes them (AVX-512F), else ORT's `MatMul`; on ONNX Runtime's Attention the QKV
            # product is taken to run at the MatMul nodes' rate.
            mm_op = "MatMulF32" if "MatMulF32" in per_op else "MatMul"
            whose = "frostline's fp32 kernel" if mm_op == "MatMulF32" else "ONNX Runtime's products"
            mm_flops = flops if "AttentionCore" in per_op else matmul_flops_per_token(graph)
            rate = tokens * mm_flops / (per_op[mm_op] / 1e6) / 1e9
            products = per_op[mm_op] * flops / mm_flops
            lines.append(
                f"- the weight products in {mm_op} nodes ({100 * mm_flops / flops:.0f} % of the model work) run at "
                f"{rate:.0f} GFLOP/s = {100 * rate / peak:.0f} % of peak; all weight products at that rate would "
                f"take {products / 1e6:.2f} s, so the rest — the attention core, GELU, LayerNorm, adds — takes "
                f"{(total - products) / 1e6:.2f} s ({100 * (total - products) / total:.0f} % of the kernel time). "
                f"With none of it the graph would reach {100 * rate / peak:.0f} % of peak: the ceiling set by "
                f"{whose}"
                + (f". Those products run at {100 * rate / fma_peak:.0f} % of the chip's FMA ceiling; at the "
                   f"ceiling they and the attention's own products ({att_flops / 1e9:.0f} GFLOP) would take "
                   f"{(tokens * flops + att_flops) / fma_peak / 1e9:.2f} s, the floor of this graph on this chip"
                   if fma_peak and mm_op == "MatMulF32" else "")
                + (f"; the same kernel outside ONNX Runtime runs at {kernels['fp32_gflops']:.0f} GFLOP/s, so in "
                   f"the graph the products keep {100 * rate / kernels['fp32_gflops']:.0f} % of its own rate"
                   if kernels.get("fp32_gflops") and mm_op == "MatMulF32" else ""))
        int8_op = next((op for op in ("MatMulInt8", "MatMulIntegerToFloat") if op in per_op), None)
        if gname.startswith("int8") and int8_op:
            # Every weight product of the per-token graph is an int8 product node.
            rate = tokens * flops / 2 / (per_op[int8_op] / 1e6) / 1e9
            rest = total - per_op[int8_op]
            lines.append(
                f"- the int8 products ({int8_op}) run at {rate:.0f} G multiply-adds/s = "
                f"{100 * rate / int8_peak:.0f} % of ONNX Runtime's best int8 product rate measured above"
                + (f" and {100 * rate / vnni_peak:.0f} % of the chip's vpdpbusd ceiling" if vnni_peak and on_vnni else "")
                + f"; the rest takes {rest / 1e6:.2f} s ({100 * rest / total:.0f} % of the kernel time)"
                + (f". At the ceilings the int8 products would take {tokens * flops / 2 / vnni_peak / 1e9:.2f} s "
                   f"and the attention's fp32 products ({att_flops / 1e9:.0f} GFLOP) {att_flops / fma_peak / 1e9:.2f} s: "
                   f"{(tokens * flops / 2 / vnni_peak + att_flops / fma_peak) / 1e9:.2f} s, the floor of this graph "
                   "on this chip" if vnni_peak and fma_peak and on_vnni and int8_op == "MatMulInt8" else "")
                + (f"; the same kernel outside ONNX Runtime runs at {kernels['int8_gmacs']:.0f} G multiply-adds/s, so "
                   f"in the graph the products keep {100 * rate / kernels['int8_gmacs']:.0f} % of its own rate"
                   if kernels.get("int8_gmacs") and int8_op == "MatMulInt8" else ""))
        lines.append("")
    benchlib.write_report(args.out, lines)


if __name__ == "__main__":
    main()
