#!/usr/bin/env python3
"""Quantize an exported frostline graph to int8 (run by `frostline quantize` in the set-up venv).

    quantize_onnx.py --input model.onnx --output out.onnx --method per-token
    quantize_onnx.py --input model.onnx --output out.onnx --method static \
        --calibration texts.txt --tokenizer tokenizer.json --max-length 256
    quantize_onnx.py --input model.onnx --output out.onnx --method dynamic

Only the MatMuls with a weight (Q, K, V, attention output, FFN in and out) become int8; the
attention products, LayerNorm, Softmax and GELU stay fp32, where int8 costs accuracy for little
speed. Weights are int8, symmetric, one scale per output channel (per tensor with --per-tensor).
The activations feeding them:

- per-token: int8 with one scale per token row, measured at run time from that row alone —
  a text's vector never depends on the other texts in its batch, and no calibration is needed;
- static: uint8 with ranges fixed from calibration texts (ONNX Runtime's quantize_static);
- dynamic: uint8 with one range per batch, measured at run time (quantize_dynamic) — vectors
  change with their batch-mates.

Prints one JSON line describing what was done; frostline records it in the folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np


def die(msg: str) -> None:
    print(f"quantize_onnx: error: {msg}", file=sys.stderr)
    sys.exit(2)


def weight_matmuls(model) -> tuple[list, set]:
    """Names every unnamed node (exclusion lists go by name) and returns the MatMuls with an fp32
    weight initializer, and the names of the other MatMuls."""
    from onnx import TensorProto

    inits = {i.name: i for i in model.graph.initializer}
    weighted, other = [], set()
    for i, n in enumerate(model.graph.node):
        if not n.name:
            n.name = f"{n.op_type}_{i}"
        if n.op_type != "MatMul":
            continue
        w = inits.get(n.input[1])
        if w is not None and w.data_type == TensorProto.FLOAT and len(w.dims) == 2:
            weighted.append(n)
        else:
            other.add(n.name)
    return weighted, other


def per_token(model, per_channel: bool) -> int:
    """Rewrites each weighted MatMul y = x·W as int8: x's rows quantized symmetrically with
    their own max (QuantizeLinear along axis 0 of the [rows, K] view, zero point 128 in uint8),
    int8 W, then y = (q − 128)·W_q · w_scale · row_scale."""
    from onnx import helper, numpy_helper

    g = model.graph
    weighted, _ = weight_matmuls(model)
    inits = {i.name: i for i in g.initializer}
    g.initializer.extend([
        numpy_helper.from_array(np.array(127.0, np.float32), "fl_q_127"),
        numpy_helper.from_array(np.array(1e-12, np.float32), "fl_q_eps"),
        numpy_helper.from_array(np.array(128, np.uint8), "fl_q_zp"),
        numpy_helper.from_array(np.array(1.0, np.float32), "fl_q_one"),
        numpy_helper.from_array(np.array([-1], np.int64), "fl_q_flat"),
    ])
    targets = {id(n) for n in weighted}
    quantized: dict[str, str] = {}  # one quantization per activation (Q, K and V share theirs)
    nodes = []
    for n in g.node:
        if id(n) not in targets:
            nodes.append(n)
            continue
        x, w_name, out = n.input[0], n.input[1], n.output[0]
        w = numpy_helper.to_array(inits[w_name])
        amax = np.abs(w).max(axis=0) if per_channel else np.full(w.shape[1], np.abs(w).max())
        w_scale = (np.maximum(amax, 1e-12) / 127.0).astype(np.float32)
        w_q = np.clip(np.round(w / w_scale), -127, 127).astype(np.int8)
        p = f"{n.name}_q_"
        g.initializer.extend([numpy_helper.from_array(w_q, p + "w"), numpy_helper.from_array(w_scale, p + "w_scale")])
        if x not in quantized:
            a = f"{n.name}_qa_"
            quantized[x] = a
            g.initializer.append(numpy_helper.from_array(np.array([-1, w.shape[0]], np.int64), a + "rows_k"))
            nodes += [
                helper.make_node("Abs", [x], [a + "abs"]),
                helper.make_node("ReduceMax", [a + "abs"], [a + "amax0"], axes=[-1], keepdims=1),
                helper.make_node("Max", [a + "amax0", "fl_q_eps"], [a + "amax"]),
                helper.make_node("Div", [a + "amax", "fl_q_127"], [a + "scale"]),
                helper.make_node("Reshape", [a + "scale", "fl_q_flat"], [a + "scale_rows"]),
                helper.make_node("Shape", [a + "scale_rows"], [a + "rows"]),
                helper.make_node("Expand", ["fl_q_zp", a + "rows"], [a + "zp_rows"]),
                helper.make_node("Reshape", [x, a + "rows_k"], [a + "x2"]),
                helper.make_node("QuantizeLinear", [a + "x2", a + "scale_rows", a + "zp_rows"], [a + "q2"], axis=0),
                helper.make_node("Shape", [x], [a + "shape"]),
                helper.make_node("Reshape", [a + "q2", a + "shape"], [a + "q"]),
            ]
        a = quantized[x]
        # ORT's MatMulIntegerToFloat (contrib op, CPU) takes one activation scale or one per
        # column of A, not one per row: it applies the weight scales (activation scale 1), and a
        # Mul applies each row's own scale. (Left to ORT's fusion, MatMulInteger → Cast →
        # Mul(row × column scale) became a MatMulIntegerToFloat that gave wrong vectors.)
        nodes += [
            helper.make_node("MatMulIntegerToFloat", [a + "q", p + "w", "fl_q_one", p + "w_scale", "fl_q_zp"],
                             [p + "f"], domain="com.microsoft"),
            helper.make_node("Mul", [p + "f", a + "scale"], [out]),
        ]
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    kept = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    return len(weighted)


class TextReader:
    """Feeds calibration texts one at a time (no padding: padded positions would widen ranges)."""

    def __init__(self, texts: list[str], tokenizer_path: str, max_length: int, inputs: list[str]):
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(tokenizer_path)
        tok.no_padding()
        tok.enable_truncation(max_length)
        self.feeds = []
        for enc in tok.encode_batch(texts):
            feed = {
                "input_ids": np.array([enc.ids], dtype=np.int64),
                "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
                "token_type_ids": np.array([enc.type_ids], dtype=np.int64),
            }
            self.feeds.append({k: v for k, v in feed.items() if k in inputs})
        self.pos = 0

    def get_next(self):
        if self.pos >= len(self.feeds):
            return None
        self.pos += 1
        return self.feeds[self.pos - 1]

    def rewind(self):
        self.pos = 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--method", choices=["per-token", "static", "dynamic"], required=True)
    ap.add_argument("--per-tensor", action="store_true", help="one weight scale per matrix instead of per output channel")
    ap.add_argument("--calibration", help="static: texts, one per line")
    ap.add_argument("--tokenizer", help="static: tokenizer.json")
    ap.add_argument("--max-length", type=int, default=256)
    args = ap.parse_args()

    import onnx
    import onnxruntime

    per_channel = not args.per_tensor
    model = onnx.load(args.input)
    weighted, other = weight_matmuls(model)
    if not weighted:
        die(f"{args.input}: no MatMul with a weight to quantize")
    record = {
        "method": args.method,
        "per_channel": per_channel,
        "weights": "int8 symmetric",
        "quantized_matmuls": len(weighted),
        "onnxruntime": onnxruntime.__version__,
    }
    partial = args.output + ".partial"
    work = tempfile.mkdtemp(prefix="frostline-quantize-")
    try:
        if args.method == "per-token":
            per_token(model, per_channel)
            if not any(o.domain == "com.microsoft" for o in model.opset_import):
                model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
            onnx.checker.check_model(model)
            onnx.save(model, partial)
            record["activations"] = "int8 symmetric, one scale per token, measured at run time"
        else:
            from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

            named = os.path.join(work, "named.onnx")
            onnx.save(model, named)
            if args.method == "dynamic":
                quantize_dynamic(named, partial, weight_type=QuantType.QInt8, per_channel=per_channel,
                                 op_types_to_quantize=["MatMul"], nodes_to_exclude=sorted(other))
                record["activations"] = "uint8, one range per batch, measured at run time"
            else:
                if not args.calibration or not args.tokenizer:
                    die("static quantization needs --calibration TEXTS and --tokenizer")
                with open(args.calibration, encoding="utf-8") as f:
                    texts = [line.rstrip("\n") for line in f if line.strip()]
                if not texts:
                    die(f"{args.calibration}: no calibration texts (one per line)")
                inputs = [i.name for i in model.graph.input]
                reader = TextReader(texts, args.tokenizer, args.max_length, inputs)
                # The calibrator writes its augmented graph to TMPDIR: keep it in our work folder.
                os.environ["TMPDIR"] = work
                tempfile.tempdir = work
                quantize_static(named, partial, reader, quant_format=QuantFormat.QOperator,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                per_channel=per_channel, op_types_to_quantize=["MatMul"],
                                nodes_to_exclude=sorted(other), calibrate_method=CalibrationMethod.MinMax,
                                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
                record["activations"] = "uint8 asymmetric, ranges fixed from the calibration texts (MinMax)"
                record["calibration_texts"] = len(texts)
        os.replace(partial, args.output)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
