#!/usr/bin/env python3
"""Where ONNX Runtime's time goes in frostline's fused graphs, op type by op type (ORT's own
profiler, kernel time), for the fp32 and the int8 (per-token) graph on the short test texts and on
long documents; and what that means for the fp32 throughput target: the model GFLOP/s frostline
could reach if every op but the weight products took no time at all. Through
scripts/bench_ort_profile.sh; writes bench-results/ort_profile.md.

    bench_ort_profile.py --model models/all-MiniLM-L6-v2 --int8 INT8_FOLDER --shared ../shared \
        --threads 2 --out bench-results/ort_profile.md
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from bench_embed import corpus  # noqa: E402

# The products with a weight: in the fp32 graph MatMul nodes, in the int8 graph the int8 ones.
WEIGHT_PRODUCTS = {"MatMul", "MatMulIntegerToFloat"}


def profile(graph: str, tokenizer: str, texts: list[str], threads: int, work: Path) -> tuple[dict, int]:
    """Kernel microseconds per op type over one pass of `texts` (length-sorted batches of 32),
    and the real tokens seen."""
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
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, float] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    return dict(per_op), sum(len(e.ids) for e in enc)


def main() -> None:
    ap = argparse.ArgumentParser()
    benchlib.common_args(ap, "model", "shared", "texts", "threads", "out",
                         shared={"default": str(Path(__file__).resolve().parents[2] / "shared")},
                         out={"default": "bench-results/ort_profile.md"})
    ap.add_argument("--int8", required=True, help="an int8 (per-token) folder made from --model")
    ap.add_argument("--long-texts", type=int, default=600)
    args = ap.parse_args()

    cpu, flags = benchlib.cpu_info()
    tokenizer = f"{args.model}/tokenizer.json"
    corpora = {
        "short": corpus(Path(args.shared), args.texts),
        "long": benchlib.long_corpus(Path(args.shared), tokenizer, args.long_texts),
    }
    work = Path(tempfile.mkdtemp(prefix="frostline-profile-"))
    peak, shape = benchlib.ort_matmul_peak(args.threads)
    flops = benchlib.model_flops_per_token(args.model)
    lines = [
        f"# Where ONNX Runtime's time goes in frostline's fused graphs — {args.threads} threads, one run",
        "",
        f"CPU: {cpu}; flags: {flags}",
        "",
        f"ONNX Runtime fp32 matmul peak: {peak:.0f} GFLOP/s ({shape}); model work {flops / 1e6:.2f} MFLOP per token "
        "(weight products). Kernel time from ONNX Runtime's profiler, length-sorted batches of 32.",
        "",
    ]
    for cname, texts in corpora.items():
        for gname, graph in [("fp32", f"{args.model}/model.onnx"), ("int8 per-token", f"{args.int8}/model.onnx")]:
            per_op, tokens = profile(graph, tokenizer, texts, args.threads, work)
            total = sum(per_op.values())
            products = sum(v for k, v in per_op.items() if k in WEIGHT_PRODUCTS)
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
                      + (f" = **{100 * achieved / peak:.0f} % of the fp32 matmul peak**" if gname == "fp32" else "")]
            if gname == "fp32":
                ceiling = tokens * flops / (products / 1e6) / 1e9
                lines.append(
                    f"- the weight products alone: {products / 1e6:.2f} s = {ceiling:.0f} GFLOP/s = "
                    f"{100 * ceiling / peak:.0f} % of peak: the ceiling if attention, GELU, LayerNorm and every "
                    f"other op took no time; what they take ({100 * (total - products) / total:.0f} % of the "
                    "kernel time) is what keeps the graph below it")
            lines.append("")
    benchlib.write_report(args.out, lines)


if __name__ == "__main__":
    main()
