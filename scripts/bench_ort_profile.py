#!/usr/bin/env python3
"""Where ONNX Runtime's time goes in frostline's fused graphs, op type by op type (ORT's own
profiler, kernel time), for the fp32 and the int8 (per-token) graph on the short test texts and on
long documents; and what that means for the fp32 throughput target: the model GFLOP/s frostline
could reach if every op but the weight products took no time at all. The graphs frostline runs
are profiled inside `frostline embed` (FROSTLINE_ORT_PROFILE; on CPU both graphs run rewritten
onto frostline's kernels, src/backbone/own_graph.rs: where its product kernels run (fp32 with
AVX-512F, int8 with AMX-INT8 or AVX512-VNNI) each layer is its QKV product, its attention core
and one node for all after it; frostline's operators load nowhere else); the portable fp32 and int8 graphs (ONNX Runtime's ops
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


def tail_line(gname: str, per_op: dict, tokens: int, flops: float, qkv_share: float, att_flops: float,
              total: float, peak: float, int8_peak: float, fma_peak: float | None,
              vnni_peak: float | None) -> str:
    """The graphs frostline runs on its own kernels: each layer is its QKV product node
    (`MatMulF32` / `MatMulInt8`), `AttentionCore`, and one `LayerTail*` node with the other three
    weight products and the norms, GELU and quantization between them (src/backbone/own_ops.rs).
    The QKV node's rate is the products' own; the tail's is its product work over all its time.
    Rates in GFLOP/s (fp32) or G multiply-adds/s (int8), against ONNX Runtime's best rate and
    the chip's ceiling; then what is left, and the floor of the graph at the ceilings."""
    int8 = "LayerTailInt8" in per_op
    product, tail = ("MatMulInt8", "LayerTailInt8") if int8 else ("MatMulF32", "LayerTailF32")
    work = tokens * flops / (2 if int8 else 1)
    unit = "G multiply-adds/s" if int8 else "GFLOP/s"
    ort_best, ceiling = (int8_peak, vnni_peak) if int8 else (peak, fma_peak)
    ort_name = "ONNX Runtime's best int8 product rate" if int8 else "ONNX Runtime's matmul peak"

    def rate(op: str, share: float) -> str:
        r = work * share / (per_op[op] / 1e6) / 1e9
        return (f"{r:.0f} {unit} = {100 * r / ort_best:.0f} % of {ort_name}"
                + (f", {100 * r / ceiling:.0f} % of the chip's {'vpdpbusd' if int8 else 'FMA'} ceiling"
                   if ceiling else ""))

    rest = total - per_op[product] - per_op[tail]
    line = (f"- each layer's QKV products ({product}, {100 * qkv_share:.0f} % of the model work) run at "
            f"{rate(product, qkv_share)}; its tail ({tail}: the other three weight products, "
            f"{100 * (1 - qkv_share):.0f} % of the model work, with the norms"
            + (", GELU and quantization" if int8 else " and GELU") + " between them, its product work "
            f"over all its time) at {rate(tail, 1 - qkv_share)}; the attention cores and the rest take "
            f"{rest / 1e6:.2f} s "
            f"({100 * rest / total:.0f} % of the kernel time)")
    if ceiling and fma_peak:
        floor = work / ceiling / 1e9 + att_flops / fma_peak / 1e9
        line += (f". At the ceilings the weight products and the attention's fp32 products "
                 f"({att_flops / 1e9:.0f} GFLOP) would take {floor:.2f} s, the floor of this graph on this chip")
    return line


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
    peak, shape = benchlib.ort_matmul_peak(args.threads)
    int8_peak, int8_shape = benchlib.ort_int8_matmul_peak(args.threads)
    flops = benchlib.model_flops_per_token(args.model)
    cfg = json.loads((Path(args.model) / "config.json").read_text())
    h, f = cfg["hidden_size"], cfg["intermediate_size"]
    # The QKV product's share of a layer's weight products; the rest is in its tail.
    qkv_share = 3 * h * h / (4 * h * h + 2 * h * f)
    chip = benchlib.chip_peak(args.threads)
    fma_peak, vnni_peak = chip.get("fp32_fma_gflops"), chip.get("int8_vnni_gmacs")
    on_vnni = benchlib.int8_on_vnni(args.frostline, args.int8)
    lines = [
        f"# Where ONNX Runtime's time goes in frostline's fused graphs — {args.threads} threads, one run",
        "",
        f"CPU: {cpu}; flags: {flags}",
        "",
        f"ONNX Runtime fp32 matmul peak: {peak:.0f} GFLOP/s ({shape}); its best int8 product rate "
        f"(`MatMulIntegerToFloat`, the same shapes): {int8_peak:.0f} G multiply-adds/s ({int8_shape}). "
        f"The chip's own ceilings with {args.threads} threads (`cargo bench --bench chip_peak`: FMAs and "
        "`vpdpbusd` in registers, no memory traffic): "
        + (f"fp32 {fma_peak:.0f} GFLOP/s ({chip['fp32_fma_isa']} FMA; ONNX Runtime's matmul peak is "
           f"{100 * peak / fma_peak:.0f} % of it)" if fma_peak else "no fp32 FMA")
        + (f", int8 {vnni_peak:.0f} G multiply-adds/s (AVX512-VNNI; ONNX Runtime's best int8 rate is "
           f"{100 * int8_peak / vnni_peak:.0f} % of it). " if vnni_peak else ", no AVX512-VNNI. ")
        + f"Model work {flops / 1e6:.2f} MFLOP per token "
        "(weight products). Kernel time from ONNX Runtime's profiler: inside `frostline embed` "
        "(length-sorted, 1024 padded tokens per batch) for the graphs frostline runs, from Python "
        "(length-sorted batches of 32) for the portable fp32 and int8 graphs.",
        "",
    ]
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
    for cname, texts in corpora.items():
        lengths = [len(e.ids) for e in tok.encode_batch(texts)]
        tokens = sum(lengths)
        att_flops = benchlib.attention_flops(args.model, lengths)
        for gname, run, graph in runs:
            per_op = run(texts)
            total = sum(per_op.values())
            lines += [
                f"## {gname}, {cname} corpus ({len(texts)} texts, {tokens / len(texts):.1f} tokens on average)",
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
            if "LayerTailF32" in per_op or "LayerTailInt8" in per_op:
                lines.append(tail_line(gname, per_op, tokens, flops, qkv_share, att_flops, total,
                                       peak, int8_peak, fma_peak, vnni_peak if on_vnni else None))
            elif graph:
                # The weight products' own rate, where each is a product node: ORT's `MatMul`
                # (on ONNX Runtime's Attention the QKV product is taken to run at their rate), or
                # `MatMulF32` where frostline's rewrite split Attention but fused no layer tail.
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
                    f"{whose}")
            int8_op = "MatMulIntegerToFloat" if "MatMulIntegerToFloat" in per_op else None
            if gname.startswith("int8") and int8_op and "LayerTailInt8" not in per_op:
                # Every weight product of the per-token graph is an int8 product node.
                rate = tokens * flops / 2 / (per_op[int8_op] / 1e6) / 1e9
                rest = total - per_op[int8_op]
                lines.append(
                    f"- the int8 products ({int8_op}) run at {rate:.0f} G multiply-adds/s = "
                    f"{100 * rate / int8_peak:.0f} % of ONNX Runtime's best int8 product rate measured above"
                    + (f" and {100 * rate / vnni_peak:.0f} % of the chip's vpdpbusd ceiling" if vnni_peak and on_vnni else "")
                    + f"; the rest takes {rest / 1e6:.2f} s ({100 * rest / total:.0f} % of the kernel time)")
            lines.append("")
    benchlib.write_report(args.out, lines)


if __name__ == "__main__":
    main()
