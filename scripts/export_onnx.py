#!/usr/bin/env python3
"""Export a local Hugging Face / sentence-transformers model folder to ONNX for frostline.

BERT-family models are built directly with the `onnx` package from config.json and
model.safetensors (no torch: a 300 MB venv instead of 6 GB). Any other architecture goes through
`torch.onnx.export` when torch is installed.

    export_onnx.py --model SRC_DIR --output models/NAME
    export_onnx.py --model DIR --output DIR --cut-at N        # adds DIR/model.cut-N.onnx
    export_onnx.py --model SRC --output OUT --weights TUNED.safetensors   # a tuned full model
    export_onnx.py --model SRC --output OUT --pooling cls --normalize       # no modules.json

Folders as people have them are accepted: weights in model.safetensors or only in
pytorch_model.bin (read without torch: the zip archive and a restricted unpickler that rebuilds
tensors and nothing else), names prefixed with `bert.` and extra heads (`cls.*`, `pooler.*`)
dropped; only vocab.txt (+ tokenizer_config.json) and no tokenizer.json (a WordPiece
tokenizer.json is written, lower-casing as the config says). The output folder is built beside
its place and renamed into it, so a failure leaves no half-written folder.

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


class TorchArchive:
    """Reads the tensors of a PyTorch `torch.save` zip file without torch: the pickle is replayed
    by an unpickler that knows only how to rebuild tensors from the archive's storages and plain
    containers; any other global in the file (code a malicious pickle would run) is refused."""

    DTYPES = {
        "FloatStorage": np.float32,
        "HalfStorage": np.float16,
        "DoubleStorage": np.float64,
        "BFloat16Storage": None,  # widened to float32 below
        "LongStorage": np.int64,
        "IntStorage": np.int32,
        "ShortStorage": np.int16,
        "CharStorage": np.int8,
        "ByteStorage": np.uint8,
        "BoolStorage": np.bool_,
    }

    def __init__(self, path: Path):
        import zipfile

        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            die(f"{path} is not a zip archive: only the torch.save format of PyTorch >= 1.6 is read "
                f"without torch (convert it once with: python -c \"import torch, safetensors.torch as s; "
                f"s.save_file(torch.load('{path}'), 'model.safetensors')\")")
        pkls = [n for n in self.zip.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkls) != 1:
            die(f"{path}: expected one data.pkl in the archive, found {len(pkls)}")
        self.root = pkls[0][: -len("data.pkl")]

    def storage(self, kind: str, key: str) -> np.ndarray:
        raw = self.zip.read(f"{self.root}data/{key}")
        if kind == "BFloat16Storage":
            u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            return u16.view(np.float32)
        return np.frombuffer(raw, dtype=np.dtype(self.DTYPES[kind]).newbyteorder("<"))

    def tensors(self) -> dict[str, np.ndarray]:
        import collections
        import pickle

        archive = self

        class Storage:
            def __init__(self, kind: str):
                self.kind = kind

        def rebuild(storage, offset, size, stride, *_):
            flat = storage
            if not size:
                return flat[offset:offset + 1].reshape(()).copy()
            item = flat.itemsize
            view = np.lib.stride_tricks.as_strided(
                flat[offset:], shape=tuple(size), strides=tuple(st * item for st in stride))
            return np.ascontiguousarray(view)

        allowed = {
            ("torch._utils", "_rebuild_tensor_v2"): rebuild,
            ("torch._utils", "_rebuild_tensor"): rebuild,
            ("collections", "OrderedDict"): collections.OrderedDict,
        }

        class Restricted(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) in allowed:
                    return allowed[(module, name)]
                if module == "torch" and name in TorchArchive.DTYPES:
                    return Storage(name)
                die(f"{archive.path}: the pickle asks for {module}.{name}; only tensors are read "
                    f"(nothing in the file is executed)")

            def persistent_load(self, pid):
                # ('storage', storage type, key, location, numel)
                if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
                    die(f"{archive.path}: unexpected persistent id {pid!r}")
                kind = pid[1].kind if isinstance(pid[1], Storage) else str(pid[1])
                if kind not in TorchArchive.DTYPES:
                    die(f"{archive.path}: unsupported storage type {kind}")
                return archive.storage(kind, str(pid[2]))

        with self.zip.open(f"{self.root}data.pkl") as f:
            state = Restricted(f).load()
        if not isinstance(state, dict):
            die(f"{self.path}: the archive holds a {type(state).__name__}, not a state dict")
        return {k: v for k, v in state.items() if isinstance(v, np.ndarray)}


def canonical(weights: dict[str, np.ndarray], whole: bool = True) -> dict[str, np.ndarray]:
    """The encoder's tensors under the names the graph builder and frostline read: an
    architecture prefix (`bert.`) stripped, task heads and the pooler (`cls.*`, `pooler.*`)
    dropped. `whole`: a full model (an override may hold only some layers)."""
    out = {}
    for k, v in weights.items():
        name = k.split(".", 1)[1] if k.startswith("bert.") else k
        if name.startswith(("embeddings.", "encoder.")):
            out[name] = v
    if whole and not any(k.startswith("embeddings.") for k in out):
        die("no embeddings.* tensors found (with or without a bert. prefix): is this a BERT model?")
    return out


def load_weights(src: Path, override: Path | None = None) -> tuple[dict[str, np.ndarray], str]:
    """The encoder's weights (canonical names) and the file they came from."""
    from safetensors.numpy import load_file

    path = src / "model.safetensors"
    if path.exists():
        weights = load_file(str(path))
    elif (src / "pytorch_model.bin").exists():
        path = src / "pytorch_model.bin"
        weights = TorchArchive(path).tensors()
    else:
        die(f"{src} has neither model.safetensors nor pytorch_model.bin: the graph builder needs the weights")
    weights = canonical(weights)
    if override is not None:
        for k, v in canonical(load_file(str(override)), whole=False).items():
            if k not in weights or weights[k].shape != v.shape:
                die(f"{override}: tensor {k!r} does not match a tensor of {path} in name and shape")
            weights[k] = v
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}, path.name


def wordpiece_tokenizer(src: Path, dst: Path) -> None:
    """tokenizer.json for a folder that has only vocab.txt: BERT's WordPiece with its normaliser
    (lower-casing and accent stripping as tokenizer_config.json says; HF's defaults otherwise)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab_path = src / "vocab.txt"
    vocab = {}
    for i, line in enumerate(vocab_path.read_text(encoding="utf-8").splitlines()):
        vocab.setdefault(line.rstrip("\r"), i)
    conf_path = src / "tokenizer_config.json"
    conf = json.loads(conf_path.read_text()) if conf_path.exists() else {}
    lower = bool(conf.get("do_lower_case", True))
    special = {k: conf.get(k, d) for k, d in
               [("unk_token", "[UNK]"), ("cls_token", "[CLS]"), ("sep_token", "[SEP]"), ("pad_token", "[PAD]")]}
    for k, t in special.items():
        if isinstance(t, dict):
            special[k] = t.get("content")
        if special[k] not in vocab:
            die(f"{vocab_path}: the {k} {special[k]!r} is not in the vocabulary")
    tok = Tokenizer(models.WordPiece(vocab, unk_token=special["unk_token"], max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=bool(conf.get("tokenize_chinese_chars", True)),
        strip_accents=conf.get("strip_accents"), lowercase=lower)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = special["cls_token"], special["sep_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
    tok.decoder = decoders.WordPiece(prefix="##")
    for t in special.values():
        tok.add_special_tokens([t])
    tok.save(str(dst / "tokenizer.json"))


def pooling_files(dst: Path, hidden: int, mode: str, normalize: bool) -> None:
    """modules.json + 1_Pooling/config.json (+ 2_Normalize) as sentence-transformers writes them."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (dst / "2_Normalize").mkdir(exist_ok=True)
    (dst / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (dst / "1_Pooling").mkdir(exist_ok=True)
    conf = {
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": mode == "cls",
        "pooling_mode_mean_tokens": mode == "mean",
        "pooling_mode_max_tokens": mode == "max",
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (dst / "1_Pooling" / "config.json").write_text(json.dumps(conf, indent=2) + "\n")


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


def written_here(name: str) -> bool:
    """Whether a top-level name in a model folder is one the exporter (or frostline, for the
    graphs it makes on demand) writes — what a re-export may replace."""
    import fnmatch

    own = {rel.split("/")[0] for rel in COPIED_FILES} | {"model.onnx", "frostline.json", "2_Normalize"}
    return name in own or fnmatch.fnmatch(name, "model.cut-*.onnx") or fnmatch.fnmatch(name, ".model.cut-*")


def replace_folder(built: Path, dst: Path) -> None:
    """Moves the finished folder `built` to `dst`: into its place when `dst` is absent or empty,
    over it when it is a folder this exporter wrote (it has frostline.json); anything else is
    refused (and `built` removed), so no folder the exporter did not write is ever replaced."""
    if dst.exists():
        if not dst.is_dir() or (any(dst.iterdir()) and not (dst / "frostline.json").exists()):
            shutil.rmtree(built, ignore_errors=True)
            die(f"{dst} exists and was not written by this exporter (no frostline.json); choose another --output")
        foreign = sorted(p.name for p in dst.iterdir() if not written_here(p.name))
        if foreign:
            shutil.rmtree(built, ignore_errors=True)
            die(f"{dst} also holds {', '.join(foreign)}, which the exporter did not write; move "
                f"{'it' if len(foreign) == 1 else 'them'} out or choose another --output")
        old = dst.parent / f".{dst.name}.old-{os.getpid()}"
        os.rename(dst, old)
        os.rename(built, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(built, dst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path, help="local HF / sentence-transformers folder")
    ap.add_argument("--output", required=True, type=Path, help="folder to write (built beside it, then renamed)")
    ap.add_argument("--cut-at", type=int, default=None, help="write model.cut-N.onnx: embeddings + first N layers")
    ap.add_argument("--weights", type=Path, default=None, help="safetensors whose tensors replace the model's")
    ap.add_argument("--pooling", choices=["mean", "cls", "max"], default=None,
                    help="for a folder without modules.json: the pooling, written into the output folder")
    ap.add_argument("--normalize", action="store_true", help="with --pooling: L2-normalise the pooled vectors")
    ap.add_argument("--prefix", default=None,
                    help="text put before every input (e5's 'query: '); recorded in frostline.json")
    args = ap.parse_args()

    src: Path = args.model
    cfg_path = src / "config.json"
    if not cfg_path.exists():
        die(f"{cfg_path} not found: --model must be a Hugging Face model folder")
    cfg = json.loads(cfg_path.read_text())
    layers = int(cfg.get("num_hidden_layers", 0))
    if args.cut_at is not None and not 0 <= args.cut_at <= layers:
        die(f"--cut-at {args.cut_at} is outside 0..{layers} (the model has {layers} layers)")
    if args.normalize and args.pooling is None:
        die("--normalize goes with --pooling (the folder's modules.json decides otherwise)")
    if args.pooling is not None and (src / "modules.json").exists():
        die(f"{src / 'modules.json'} already decides the pooling; drop --pooling/--normalize")
    bert = cfg.get("model_type") in BERT_FAMILY
    if not bert and args.weights is not None:
        die("--weights is supported by the torch-free BERT builder only")

    dst: Path = args.output
    if args.cut_at is not None:
        # One more graph into an existing model folder: a temp file renamed into place.
        graph_name = f"model.cut-{args.cut_at}.onnx"
        tmp = dst / f".{graph_name}.tmp-{os.getpid()}"
        if bert:
            import onnx

            weights, _ = load_weights(src, args.weights)
            model, out_name = BertGraph(cfg, weights).build(args.cut_at)
            onnx.checker.check_model(model)
            onnx.save(model, str(tmp))
            route = "graph-builder"
        else:
            out_name = export_with_torch(src, tmp, args.cut_at)
            route = "torch.onnx.export"
        os.replace(tmp, dst / graph_name)
        print(f"export_onnx: wrote {dst / graph_name} ({route}, output {out_name!r})")
        return

    dst.parent.mkdir(parents=True, exist_ok=True)
    built = dst.parent / f".{dst.name}.export-{os.getpid()}"
    shutil.rmtree(built, ignore_errors=True)
    built.mkdir()
    try:
        info = build_folder(src, built, cfg, args)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    replace_folder(built, dst)
    print(f"export_onnx: wrote {dst / 'model.onnx'} ({info['route']}, output {info['output']!r})")


def build_folder(src: Path, out: Path, cfg: dict, args) -> dict:
    """Writes the whole model folder into `out` (a fresh temp folder)."""
    weights_from, tokenizer_from = None, "tokenizer.json"
    if cfg.get("model_type") in BERT_FAMILY:
        import onnx
        from safetensors.numpy import save_file

        weights, weights_from = load_weights(src, args.weights)
        model, out_name = BertGraph(cfg, weights).build(None)
        onnx.checker.check_model(model)
        onnx.save(model, str(out / "model.onnx"))
        route = "graph-builder"
        # The original file when nothing changed (its bytes are the folder's identity), else the
        # canonical tensors.
        if weights_from == "model.safetensors" and args.weights is None and same_names(src, weights):
            shutil.copy2(src / "model.safetensors", out / "model.safetensors")
        else:
            save_file(weights, str(out / "model.safetensors"))
    else:
        out_name = export_with_torch(src, out / "model.onnx", None)
        route = "torch.onnx.export"
    for rel in COPIED_FILES:
        s = src / rel
        if rel == "model.safetensors":
            if not (out / rel).exists() and s.exists():
                shutil.copy2(s, out / rel)
        elif rel in ("modules.json", "1_Pooling/config.json") and args.pooling is not None:
            continue
        elif s.exists():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, out / rel)
    if not (src / "tokenizer.json").exists():
        if not (src / "vocab.txt").exists():
            die(f"{src} has neither tokenizer.json nor vocab.txt")
        wordpiece_tokenizer(src, out)
        tokenizer_from = "vocab.txt"
    if args.pooling is not None:
        pooling_files(out, int(cfg["hidden_size"]), args.pooling, args.normalize)
    info = {
        "source": str(src),
        "route": route,
        "model_type": cfg.get("model_type"),
        "num_hidden_layers": int(cfg.get("num_hidden_layers", 0)),
        "hidden_size": cfg.get("hidden_size"),
        "weights_override": str(args.weights) if args.weights else None,
        "weights_from": weights_from,
        "tokenizer_from": tokenizer_from,
        "output": out_name,
    }
    if args.pooling is not None:
        info["pooling"] = {"mode": args.pooling, "normalize": args.normalize, "from": "--pooling"}
    # A prefix the source folder already records (a frostline folder re-exported, e.g. with
    # tuned layers) carries over unless --prefix says otherwise.
    prefix = args.prefix
    if prefix is None and (src / "frostline.json").exists():
        prefix = json.loads((src / "frostline.json").read_text()).get("prefix")
    if prefix:
        info["prefix"] = prefix
    (out / "frostline.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def same_names(src: Path, weights: dict) -> bool:
    """Whether the source file holds every encoder tensor under its canonical name (extra
    tensors such as the pooler do no harm: readers take what they need by name)."""
    from safetensors import safe_open

    with safe_open(str(src / "model.safetensors"), framework="numpy") as f:
        return set(weights) <= set(f.keys())


if __name__ == "__main__":
    main()
