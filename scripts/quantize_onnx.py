#!/usr/bin/env python3
"""Quantize an exported frostline graph to int8 (run by `frostline quantize` in the set-up venv).

    quantize_onnx.py --input model.onnx --output out.onnx --method per-token
    quantize_onnx.py --input model.onnx --output out.onnx --method static \
        --calibration texts.txt --tokenizer tokenizer.json --max-length 256
    quantize_onnx.py --input model.onnx --output out.onnx --method dynamic
    quantize_onnx.py --input model.onnx --output out.onnx --method per-token --own-ops

Only the MatMuls with a weight (QKV, attention output, FFN in and out) become int8; the attention
products, LayerNorm, Softmax and GELU stay fp32, where int8 costs accuracy for little speed. A fused
`Attention` node (QKV product inside, as frostline's exporter writes it) is first split into its
QKV MatMul and a MultiHeadAttention node, so its product is quantized like the others.
Weights are int8, symmetric, one scale per output channel (per tensor with --per-tensor).
The activations feeding them:

- per-token: int8 with one scale per token row, measured at run time from that row alone —
  a text's vector never depends on the other texts in its batch, and no calibration is needed;
- static: uint8 with ranges fixed from calibration texts (ONNX Runtime's quantize_static);
- dynamic: uint8 with one range per batch, measured at run time (quantize_dynamic) — vectors
  change with their batch-mates.

--own-ops (per-token) writes the element-wise work around each int8 product with frostline's own
operators (domain ai.frostline: QuantizeRows, ScaleBiasResidual, ScaleSplit), which only
frostline's sessions load; the results are the portable graph's, bit for bit.

Prints one JSON line describing what was done; frostline records it in the folder.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile

import numpy as np


def die(msg: str) -> None:
    print(f"quantize_onnx: error: {msg}", file=sys.stderr)
    sys.exit(2)


def in_scope(weight: str, layers_below: int | None) -> bool:
    """Whether a weight is one to quantize: any, or (--layers-below N) those of encoder layers
    0..N-1 — the frozen part under a frost line, never the tuned layers or the heads above it."""
    if layers_below is None:
        return True
    m = re.match(r"encoder\.layer\.(\d+)\.", weight)
    return m is not None and int(m.group(1)) < layers_below


def unpack_attention(model, layers_below: int | None = None, three_products: bool = False) -> int:
    """Splits each fused `Attention` node (QKV product inside) into MatMul(x, W_qkv) → Split →
    MultiHeadAttention(q, k, v, bias, mask), the same maths, so that the QKV product is a
    weighted MatMul every recipe quantizes. `three_products`: Q, K and V as three MatMuls
    instead (static: each product's output gets its own calibrated uint8 range, where one range
    over Q, K and V together loses their precision). Returns how many were split."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes, count = [], 0
    for n in g.node:
        if n.op_type != "Attention" or n.domain != "com.microsoft" or not in_scope(n.input[1], layers_below):
            nodes.append(n)
            continue
        x, w, bias = n.input[0], n.input[1], n.input[2]
        mask = n.input[3] if len(n.input) > 3 else ""
        heads = next(a.i for a in n.attribute if a.name == "num_heads")
        extra = [a.name for a in n.attribute if a.name != "num_heads"]
        if w not in inits or extra or len(n.input) > 4:
            die(f"an Attention node ({n.name or n.output[0]}) with {extra or 'inputs'} this quantizer does not "
                "split; re-export the folder with scripts/export_onnx.py")
        packed = numpy_helper.to_array(inits[w])
        hidden = packed.shape[0]
        p = f"{n.name or n.output[0]}_mha_"
        if three_products:
            for i, part in enumerate("qkv"):
                # Named after the packed weight (encoder.layer.i…), so --layers-below still reads it.
                g.initializer.append(numpy_helper.from_array(
                    np.ascontiguousarray(packed[:, i * hidden:(i + 1) * hidden]), f"{w}.{part}"))
                nodes.append(helper.make_node("MatMul", [x, f"{w}.{part}"], [p + part], name=f"{p}{part}_matmul"))
            g.initializer.remove(inits[w])
        else:
            g.initializer.append(numpy_helper.from_array(np.array([hidden] * 3, np.int64), p + "split"))
            nodes += [
                helper.make_node("MatMul", [x, w], [p + "qkv"], name=p + "qkv_matmul"),
                helper.make_node("Split", [p + "qkv", p + "split"], [p + "q", p + "k", p + "v"], axis=-1),
            ]
        nodes.append(helper.make_node("MultiHeadAttention", [p + "q", p + "k", p + "v", bias, mask], [n.output[0]],
                                      domain="com.microsoft", num_heads=heads))
        count += 1
    del g.node[:]
    g.node.extend(nodes)
    return count


def weight_matmuls(model, layers_below: int | None = None) -> tuple[list, set]:
    """Names every unnamed node (exclusion lists go by name) and returns the MatMuls with an fp32
    weight initializer in scope (`in_scope`), and the names of the other MatMuls."""
    from onnx import TensorProto

    inits = {i.name: i for i in model.graph.initializer}
    weighted, other = [], set()
    for i, n in enumerate(model.graph.node):
        if not n.name:
            n.name = f"{n.op_type}_{i}"
        if n.op_type != "MatMul":
            continue
        w = inits.get(n.input[1])
        if w is not None and w.data_type == TensorProto.FLOAT and len(w.dims) == 2 and in_scope(w.name, layers_below):
            weighted.append(n)
        else:
            other.add(n.name)
    return weighted, other


OWN_DOMAIN = "ai.frostline"  # frostline's own ORT operators (src/backbone/own_ops.rs)


def bias_then_residual(readers: dict, product: str, inits: dict) -> tuple | None:
    """The two nodes `Add(product, bias)` → `Add(·, residual)` that follow a product, when each
    is its input's only reader (the attention output and FFN output products), else None."""
    first = readers.get(product, [])
    if len(first) != 1 or first[0].op_type != "Add" or first[0].domain not in ("", "ai.onnx"):
        return None
    bias = [i for i in first[0].input if i != product]
    if len(bias) != 1 or bias[0] not in inits or len(inits[bias[0]].dims) != 1:
        return None
    second = readers.get(first[0].output[0], [])
    if len(second) != 1 or second[0].op_type != "Add" or second[0].domain not in ("", "ai.onnx"):
        return None
    residual = [i for i in second[0].input if i != first[0].output[0]]
    if len(residual) != 1:
        return None
    return first[0], second[0], bias[0], residual[0]


def split_in_three(readers: dict, product: str, inits: dict) -> object | None:
    """The `Split` into Q, K and V (three equal pieces of the last axis) that alone reads a
    QKV product, else None."""
    from onnx import numpy_helper

    split = readers.get(product, [])
    if len(split) != 1 or split[0].op_type != "Split" or len(split[0].output) != 3 or len(split[0].input) != 2:
        return None
    axis = next((a.i for a in split[0].attribute if a.name == "axis"), 0)
    sizes = inits.get(split[0].input[1])
    if axis != -1 or sizes is None or len(set(numpy_helper.to_array(sizes).tolist())) != 1:
        return None
    return split[0]


def per_token(model, per_channel: bool, layers_below: int | None = None, own_ops: bool = False) -> int:
    """Rewrites each weighted MatMul y = x·W as int8: x's rows quantized symmetrically with
    their own max — one QuantizeLinear whose block is the whole row (opset 21 blocked
    quantization: scale [.., rows, 1], zero point 128 in uint8), int8 W, then y = (q·W_q · w_scale) · row_scale.
    Seven small nodes per activation and one Mul per product: the element-wise work
    around each int8 product is what bounds int8's speed, not the products.

    `own_ops`: the same arithmetic on frostline's own operators (domain ai.frostline, which only
    frostline's sessions know): one `QuantizeRows` per activation; where a product's bias and
    residual adds follow it, one `ScaleBiasResidual` for its Mul, Add, Add; for the QKV product,
    one `ScaleSplit` for its Mul and Split. Bit for bit the portable graph's results, in fewer
    passes over memory."""
    from onnx import helper, numpy_helper

    g = model.graph
    weighted, _ = weight_matmuls(model, layers_below)
    inits = {i.name: i for i in g.initializer}
    readers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    folded = {id(p): bias_then_residual(readers, p.output[0], inits) for p in weighted} if own_ops else {}
    splits = {id(p): split_in_three(readers, p.output[0], inits) for p in weighted} if own_ops else {}
    skipped = {id(n) for f in folded.values() if f for n in f[:2]} | {id(n) for n in splits.values() if n}
    g.initializer.extend([
        numpy_helper.from_array(np.array(127.0, np.float32), "fl_q_127"),
        numpy_helper.from_array(np.array(1e-12, np.float32), "fl_q_eps"),
        numpy_helper.from_array(np.array(1.0, np.float32), "fl_q_one"),
        numpy_helper.from_array(np.array(128, np.uint8), "fl_q_zp"),
        numpy_helper.from_array(np.array([-1], np.int64), "fl_q_last"),
    ])
    targets = {id(n) for n in weighted}
    quantized: dict[str, str] = {}  # one quantization per activation
    nodes = []
    for n in g.node:
        if id(n) in skipped:
            continue
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
        if x not in quantized and own_ops:
            a = f"{n.name}_qa_"
            quantized[x] = a
            nodes.append(helper.make_node("QuantizeRows", [x], [a + "q", a + "scale"], domain=OWN_DOMAIN))
        elif x not in quantized:
            a = f"{n.name}_qa_"
            quantized[x] = a
            nodes += [
                helper.make_node("Abs", [x], [a + "abs"]),
                helper.make_node("ReduceMax", [a + "abs", "fl_q_last"], [a + "amax0"], keepdims=1),
                helper.make_node("Max", [a + "amax0", "fl_q_eps"], [a + "amax"]),
                helper.make_node("Div", [a + "amax", "fl_q_127"], [a + "scale"]),
                # uint8 with zero point 128: MLAS's int8 kernels (VNNI, AMX) take u8 × s8;
                # s8 × s8 runs a reference loop ~25× slower.
                helper.make_node("Shape", [a + "scale"], [a + "rows"]),
                helper.make_node("Expand", ["fl_q_zp", a + "rows"], [a + "zp"]),
                helper.make_node("QuantizeLinear", [x, a + "scale", a + "zp"], [a + "q"], axis=-1,
                                 block_size=int(w.shape[0])),
            ]
        a = quantized[x]
        # ORT's MatMulIntegerToFloat (contrib op, CPU) takes one activation scale or one per
        # column of A, not one per row: it applies the weight scales (activation scale 1), and a
        # Mul applies each row's own scale.
        nodes.append(helper.make_node("MatMulIntegerToFloat", [a + "q", p + "w", "fl_q_one", p + "w_scale", "fl_q_zp"],
                                      [p + "f"], domain="com.microsoft"))
        fold, split = folded.get(id(n)), splits.get(id(n))
        if split:
            nodes.append(helper.make_node("ScaleSplit", [p + "f", a + "scale"], list(split.output), domain=OWN_DOMAIN))
        elif fold:
            _, second, bias, residual = fold
            nodes.append(helper.make_node("ScaleBiasResidual", [p + "f", a + "scale", bias, residual],
                                          [second.output[0]], domain=OWN_DOMAIN))
        else:
            nodes.append(helper.make_node("Mul", [p + "f", a + "scale"], [out]))
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    kept = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    # Blocked QuantizeLinear (block_size) is opset 21; the other ops of the
    # exporter's graph mean the same at 21 as at 17.
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = max(o.version, 21)
    model.ir_version = max(model.ir_version, 10)
    if own_ops:
        model.opset_import.append(helper.make_opsetid(OWN_DOMAIN, 1))
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
    ap.add_argument("--own-ops", action="store_true",
                    help="per-token: fold the element-wise work into frostline's own operators (a graph only frostline runs)")
    ap.add_argument("--layers-below", type=int, default=None,
                    help="quantize only the weights of encoder layers 0..N-1 (a graph with tuned layers or heads above them)")
    args = ap.parse_args()

    import onnx
    import onnxruntime

    if args.own_ops and args.method != "per-token":
        die("--own-ops is for the per-token recipe (static and dynamic run ONNX Runtime's own int8 nodes)")
    per_channel = not args.per_tensor
    model = onnx.load(args.input)
    below = args.layers_below
    unpacked = unpack_attention(model, below, three_products=args.method == "static")
    weighted, other = weight_matmuls(model, below)
    if not weighted:
        die(f"{args.input}: no MatMul with a weight to quantize")
    record = {
        "method": args.method,
        "per_channel": per_channel,
        "weights": "int8 symmetric",
        "quantized_matmuls": len(weighted),
        "attention_nodes_split": unpacked,
        "layers_below": below,
        "onnxruntime": onnxruntime.__version__,
    }
    partial = args.output + ".partial"
    work = tempfile.mkdtemp(prefix="frostline-quantize-")
    try:
        if args.method == "per-token":
            per_token(model, per_channel, below, args.own_ops)
            record["own_ops"] = OWN_DOMAIN if args.own_ops else None
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
