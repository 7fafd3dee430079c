#!/usr/bin/env python3
"""Export a local Hugging Face / sentence-transformers model folder to ONNX for frostline.

BERT-family models are built directly with the `onnx` package from config.json and
model.safetensors (no torch: a 300 MB venv instead of 6 GB). Any other architecture goes through
`torch.onnx.export` when torch is installed.

    export_onnx.py --model SRC_DIR --output models/NAME
    export_onnx.py --model DIR --output DIR --cut-at N        # adds DIR/model.cut-N.onnx
    export_onnx.py --model SRC --output OUT --weights TUNED.safetensors   # a tuned full model

Writes OUTPUT/model.onnx (inputs input_ids, attention_mask, token_type_ids: int64 [batch, seq];
output `last_hidden_state` float32 [batch, seq, hidden]) plus the tokenizer/config/pooling files
and the safetensors weights the Rust side reads; `frostline.json` records what was exported.
With --cut-at N it writes only OUTPUT/model.cut-N.onnx, whose output `hidden_state` holds the
hidden states after the first N encoder layers (N = 0: the embedding output) — the frozen part
below the frost line. --weights replaces tensors of model.safetensors by those of another file
(e.g. the encoder layers a frost-line run tuned), for both the graph and the copied weights.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np

COPIED_FILES = [
    "tokenizer.json",
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
    "model.safetensors",
    "1_Pooling/config.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
]
BERT_FAMILY = {"bert"}


def die(msg: str) -> None:
    print(f"export_onnx: error: {msg}", file=sys.stderr)
    sys.exit(2)


def load_weights(src: Path, override: Path | None = None) -> dict[str, np.ndarray]:
    path = src / "model.safetensors"
    if not path.exists():
        die(f"{path} not found: the graph builder reads the weights from model.safetensors")
    from safetensors.numpy import load_file

    weights = load_file(str(path))
    if override is not None:
        tuned = load_file(str(override))
        prefixed = not any(k.startswith("embeddings.") for k in weights)
        for k, v in tuned.items():
            key = f"bert.{k}" if prefixed and f"bert.{k}" in weights else k
            if key not in weights or weights[key].shape != v.shape:
                die(f"{override}: tensor {k!r} does not match a tensor of {path} in name and shape")
            weights[key] = v
    # Some checkpoints prefix every name with the architecture ("bert.encoder...").
    if not any(k.startswith("embeddings.") for k in weights):
        stripped = {k.split(".", 1)[1]: v for k, v in weights.items() if k.startswith("bert.")}
        if stripped:
            weights = stripped
    return weights


class BertGraph:
    """Builds the BERT encoder graph node by node (opset 17: LayerNormalization is native)."""

    def __init__(self, cfg: dict, weights: dict[str, np.ndarray]):
        from onnx import TensorProto, helper, numpy_helper

        self.h, self.nh_, self.th = helper, numpy_helper, TensorProto
        self.cfg, self.w = cfg, weights
        self.nodes: list = []
        self.inits: dict[str, object] = {}
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def weight(self, key: str, transpose: bool = False) -> str:
        if key not in self.w:
            die(f"weight {key!r} missing from model.safetensors (does config.json match the weights?)")
        if key not in self.inits:
            arr = self.w[key].astype(np.float32)
            self.inits[key] = self.nh_.from_array(arr.T.copy() if transpose else arr, key)
        return key

    def const(self, values, dtype=np.int64) -> str:
        n = self.name("const")
        self.inits[n] = self.nh_.from_array(np.array(values, dtype=dtype), n)
        return n

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(self.h.make_node(op_type, inputs, [out], **attrs))
        return out

    def linear(self, x: str, prefix: str) -> str:
        y = self.op("MatMul", [x, self.weight(f"{prefix}.weight", transpose=True)])
        return self.op("Add", [y, self.weight(f"{prefix}.bias")])

    def layer_norm(self, x: str, prefix: str) -> str:
        eps = float(self.cfg.get("layer_norm_eps", 1e-12))
        return self.op(
            "LayerNormalization",
            [x, self.weight(f"{prefix}.weight"), self.weight(f"{prefix}.bias")],
            axis=-1,
            epsilon=eps,
        )

    def gelu(self, x: str) -> str:
        # The exact erf form BERT uses: 0.5 * x * (1 + erf(x / sqrt(2))).
        scaled = self.op("Mul", [x, self.const(1.0 / math.sqrt(2.0), np.float32)])
        e = self.op("Erf", [scaled])
        one_plus = self.op("Add", [e, self.const(1.0, np.float32)])
        half_x = self.op("Mul", [x, self.const(0.5, np.float32)])
        return self.op("Mul", [half_x, one_plus])

    def embeddings(self) -> str:
        words = self.op("Gather", [self.weight("embeddings.word_embeddings.weight"), "input_ids"], axis=0)
        types = self.op("Gather", [self.weight("embeddings.token_type_embeddings.weight"), "token_type_ids"], axis=0)
        # Position rows 0..seq: slice with 1-D starts/ends from Shape(input_ids)[1:2]. (A scalar
        # Range + Gather is rewritten by ORT's optimizer into a Slice that fails at run time.)
        seq = self.op("Slice", [self.op("Shape", ["input_ids"]), self.const([1]), self.const([2]), self.const([0])])
        pos = self.op("Slice", [self.weight("embeddings.position_embeddings.weight"), self.const([0]), seq, self.const([0])])
        summed = self.op("Add", [self.op("Add", [words, types]), pos])
        return self.layer_norm(summed, "embeddings.LayerNorm")

    def additive_mask(self) -> str:
        # [B, T] 1/0 -> [B, 1, 1, T] with 0 for real tokens and float32 min for padding, as HF does.
        m = self.op("Cast", ["attention_mask"], to=self.th.FLOAT)
        inv = self.op("Sub", [self.const(1.0, np.float32), m])
        scaled = self.op("Mul", [inv, self.const(np.finfo(np.float32).min, np.float32)])
        return self.op("Unsqueeze", [scaled, self.const([1, 2])])

    def layer(self, x: str, mask: str, i: int) -> str:
        p = f"encoder.layer.{i}"
        hidden = int(self.cfg["hidden_size"])
        heads = int(self.cfg["num_attention_heads"])
        hd = hidden // heads
        split = self.const([0, 0, heads, hd])

        def heads_of(t: str, perm: list[int]) -> str:
            return self.op("Transpose", [self.op("Reshape", [t, split])], perm=perm)

        q = heads_of(self.linear(x, f"{p}.attention.self.query"), [0, 2, 1, 3])
        k = heads_of(self.linear(x, f"{p}.attention.self.key"), [0, 2, 3, 1])
        v = heads_of(self.linear(x, f"{p}.attention.self.value"), [0, 2, 1, 3])
        scores = self.op("Mul", [self.op("MatMul", [q, k]), self.const(1.0 / math.sqrt(hd), np.float32)])
        probs = self.op("Softmax", [self.op("Add", [scores, mask])], axis=-1)
        ctx = self.op("Transpose", [self.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = self.op("Reshape", [ctx, self.const([0, 0, hidden])])
        attn = self.layer_norm(self.op("Add", [self.linear(ctx, f"{p}.attention.output.dense"), x]), f"{p}.attention.output.LayerNorm")
        inter = self.gelu(self.linear(attn, f"{p}.intermediate.dense"))
        out = self.op("Add", [self.linear(inter, f"{p}.output.dense"), attn])
        return self.layer_norm(out, f"{p}.output.LayerNorm")

    def build(self, cut_at: int | None):
        layers = int(self.cfg["num_hidden_layers"])
        upto = layers if cut_at is None else cut_at
        x = self.embeddings()
        mask = self.additive_mask() if upto > 0 else None
        for i in range(upto):
            x = self.layer(x, mask, i)
        out_name = "last_hidden_state" if cut_at is None else "hidden_state"
        self.nodes.append(self.h.make_node("Identity", [x], [out_name]))
        ids = [self.h.make_tensor_value_info(n, self.th.INT64, ["batch", "sequence"]) for n in ("input_ids", "attention_mask", "token_type_ids")]
        out = self.h.make_tensor_value_info(out_name, self.th.FLOAT, ["batch", "sequence", int(self.cfg["hidden_size"])])
        graph = self.h.make_graph(self.nodes, "frostline_bert", ids, [out], initializer=list(self.inits.values()))
        model = self.h.make_model(graph, opset_imports=[self.h.make_opsetid("", 17)], producer_name="frostline")
        model.ir_version = 8
        return model, out_name


def export_with_torch(src: Path, dst: Path, cut_at: int | None) -> str:
    try:
        import torch
        from transformers import AutoModel
    except ImportError:
        die(
            f"{src}/config.json names an architecture the torch-free builder does not cover "
            f"(it builds {sorted(BERT_FAMILY)}); install torch and transformers into the venv to export it "
            "(pip install torch transformers)"
        )
    if cut_at is not None:
        die("--cut-at is supported by the torch-free BERT builder only")
    model = AutoModel.from_pretrained(str(src), local_files_only=True).eval()

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    wrapper = Wrapper(model).eval()
    dummy = torch.ones((2, 8), dtype=torch.long)
    axes = {"batch": 0, "sequence": 1}
    torch.onnx.export(
        wrapper,
        (dummy, dummy, torch.zeros_like(dummy)),
        str(dst),
        dynamo=False,
        opset_version=17,
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes, "last_hidden_state": axes},
    )
    return "last_hidden_state"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path, help="local HF / sentence-transformers folder")
    ap.add_argument("--output", required=True, type=Path, help="folder to write (created)")
    ap.add_argument("--cut-at", type=int, default=None, help="write model.cut-N.onnx: embeddings + first N layers")
    ap.add_argument("--weights", type=Path, default=None, help="safetensors whose tensors replace the model's")
    args = ap.parse_args()

    src: Path = args.model
    cfg_path = src / "config.json"
    if not cfg_path.exists():
        die(f"{cfg_path} not found: --model must be a Hugging Face model folder")
    cfg = json.loads(cfg_path.read_text())
    layers = int(cfg.get("num_hidden_layers", 0))
    if args.cut_at is not None and not 0 <= args.cut_at <= layers:
        die(f"--cut-at {args.cut_at} is outside 0..{layers} (the model has {layers} layers)")

    dst: Path = args.output
    dst.mkdir(parents=True, exist_ok=True)
    graph_name = "model.onnx" if args.cut_at is None else f"model.cut-{args.cut_at}.onnx"
    tmp = dst / f".{graph_name}.tmp-{os.getpid()}"
    weights = None
    if cfg.get("model_type") in BERT_FAMILY:
        import onnx

        weights = load_weights(src, args.weights)
        model, out_name = BertGraph(cfg, weights).build(args.cut_at)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        route = "graph-builder"
    else:
        if args.weights is not None:
            die("--weights is supported by the torch-free BERT builder only")
        out_name = export_with_torch(src, tmp, args.cut_at)
        route = "torch.onnx.export"
    os.replace(tmp, dst / graph_name)
    if args.cut_at is not None:
        print(f"export_onnx: wrote {dst / graph_name} ({route}, output {out_name!r})")
        return

    for rel in COPIED_FILES:
        s = src / rel
        if rel == "model.safetensors" and args.weights is not None:
            from safetensors.numpy import save_file

            save_file(weights, str(dst / rel))
        elif s.exists() and s.resolve() != (dst / rel).resolve():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, dst / rel)
    info = {
        "source": str(src),
        "route": route,
        "model_type": cfg.get("model_type"),
        "num_hidden_layers": layers,
        "hidden_size": cfg.get("hidden_size"),
        "weights_override": str(args.weights) if args.weights else None,
        "output": out_name,
    }
    tmp_info = dst / "frostline.json.tmp"
    tmp_info.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp_info, dst / "frostline.json")
    print(f"export_onnx: wrote {dst / 'model.onnx'} ({route}, output {out_name!r})")


if __name__ == "__main__":
    main()
