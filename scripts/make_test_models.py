#!/usr/bin/env python3
"""Builds BERT-family source folders "as people have them" from the shipped all-MiniLM-L6-v2
weights, for tests/model_folders.rs (nothing here is committed), with a numpy reference forward
pass for each:

  deep-cls/    12 layers (layers 0-5 twice), no modules.json: exported with --pooling cls
  wide-random/ 768-d, 12 heads, 2 layers, random weights named `bert.*` plus `cls.*` heads,
               vocab.txt + tokenizer_config.json only (no tokenizer.json), no modules.json:
               exported with --pooling max --normalize
  bin-only/    the MiniLM weights only in pytorch_model.bin (torch.save's zip format, written here
               without torch), with its modules.json
  evil-bin/    a pytorch_model.bin whose pickle calls os.system: must be refused

    make_test_models.py --source MINILM_DIR --out DIR --texts TEXTS.txt

writes DIR/<variant>/ and DIR/<variant>.reference.npy (float32 [texts, hidden]: the pooled,
possibly normalised vectors a correct exporter + embedder must give).
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import math
import pickle
import shutil
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


def erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def forward(cfg: dict, w: dict, ids: list[int]) -> np.ndarray:
    """BERT's encoder in float64 numpy for one sequence: the last hidden states [T, H]."""
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    eps = cfg.get("layer_norm_eps", 1e-12)
    g = lambda k: w[k].astype(np.float64)

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * g(p + ".weight") + g(p + ".bias")

    def lin(x, p):
        return x @ g(p + ".weight").T + g(p + ".bias")

    t = len(ids)
    x = g("embeddings.word_embeddings.weight")[ids] + g("embeddings.position_embeddings.weight")[:t] \
        + g("embeddings.token_type_embeddings.weight")[[0] * t]
    x = ln(x, "embeddings.LayerNorm")
    d = h // heads
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        split = lambda y: y.reshape(t, heads, d).transpose(1, 0, 2)
        q, k, v = (split(lin(x, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(t, h)
        a = ln(lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        inter = lin(a, f"{p}.intermediate.dense")
        inter = 0.5 * inter * (1.0 + erf(inter / math.sqrt(2.0)))
        x = ln(lin(inter, f"{p}.output.dense") + a, f"{p}.output.LayerNorm")
    return x


def pooled(cfg, w, tokenizer, texts, mode, normalize, max_len=128) -> np.ndarray:
    out = []
    for text in texts:
        ids = tokenizer.encode(text).ids[:max_len]
        if len(ids) == max_len:
            ids[-1] = tokenizer.token_to_id("[SEP]")
        states = forward(cfg, w, ids)
        v = {"mean": states.mean(0), "cls": states[0], "max": states.max(0)}[mode]
        if normalize:
            v = v / max(np.linalg.norm(v), 1e-12)
        out.append(v)
    return np.array(out, dtype=np.float32)


def write_torch_bin(path: Path, tensors: dict[str, np.ndarray], evil: bool = False) -> None:
    """torch.save's zip format (archive/data.pkl + archive/data/<key>), written without torch:
    fake `torch` modules give the pickle the globals torch.load expects."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise RuntimeError("never called when writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    FloatStorage = type("FloatStorage", (), {"__module__": "torch"})
    torch.FloatStorage, torch._utils = FloatStorage, utils
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        storages: list[np.ndarray] = []

        class Storage:
            def __init__(self, key, numel):
                self.key, self.numel = key, numel

        class Tensor:
            def __init__(self, arr):
                self.storage = Storage(str(len(storages)), arr.size)
                storages.append(np.ascontiguousarray(arr, dtype="<f4"))
                self.shape = arr.shape
                stride, acc = [], 1
                for n in reversed(arr.shape):
                    stride.insert(0, acc)
                    acc *= n
                self.stride = tuple(stride)

            def __reduce__(self):
                return (_rebuild_tensor_v2, (self.storage, 0, self.shape, self.stride, False, collections.OrderedDict()))

        class Pickler(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, Storage):
                    return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
                return None

        class Evil:
            def __reduce__(self):
                import os

                return (os.system, ("echo pwned > /tmp/frostline-pwned",))

        state = collections.OrderedDict((k, Tensor(v)) for k, v in tensors.items())
        if evil:
            state["payload"] = Evil()
        buf = io.BytesIO()
        Pickler(buf, protocol=2).dump(state)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        for i, arr in enumerate(storages):
            z.writestr(f"archive/data/{i}", arr.tobytes())
        z.writestr("archive/version", "3\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, type=Path, help="the all-MiniLM-L6-v2 folder")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--texts", required=True, type=Path, help="one text per line")
    a = ap.parse_args()
    from tokenizers import Tokenizer

    src, out = a.source, a.out
    out.mkdir(parents=True, exist_ok=True)
    texts = [t for t in a.texts.read_text(encoding="utf-8").splitlines() if t.strip()]
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    cfg = json.loads((src / "config.json").read_text())
    w = load_file(str(src / "model.safetensors"))
    meta = ["config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"]

    # deep-cls: 12 layers, CLS pooling decided by the exporter's flag.
    d = out / "deep-cls"
    d.mkdir(exist_ok=True)
    deep = dict(w)
    for k, v in w.items():
        if k.startswith("encoder.layer."):
            i = int(k.split(".")[2])
            deep[k.replace(f"encoder.layer.{i}.", f"encoder.layer.{i + 6}.", 1)] = v
    dcfg = dict(cfg, num_hidden_layers=12)
    for m in meta:
        shutil.copy2(src / m, d / m)
    (d / "config.json").write_text(json.dumps(dcfg, indent=2))
    save_file(deep, str(d / "model.safetensors"))
    np.save(out / "deep-cls.reference.npy", pooled(dcfg, deep, tok, texts, "cls", False))

    # wide-random: 768-d, bert.-prefixed, extra heads, vocab.txt only.
    d = out / "wide-random"
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    h, inter, layers = 768, 3072, 2
    wcfg = dict(cfg, hidden_size=h, num_attention_heads=12, intermediate_size=inter, num_hidden_layers=layers)
    r = lambda *shape: (rng.standard_normal(shape) * 0.05).astype(np.float32)
    ones = lambda n: (1.0 + rng.standard_normal(n) * 0.05).astype(np.float32)
    ww = {
        "embeddings.word_embeddings.weight": r(cfg["vocab_size"], h),
        "embeddings.position_embeddings.weight": r(cfg["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": r(2, h),
        "embeddings.LayerNorm.weight": ones(h),
        "embeddings.LayerNorm.bias": r(h),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}"
        for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            ww[f"{p}.{n}.weight"], ww[f"{p}.{n}.bias"] = r(h, h), r(h)
        ww[f"{p}.intermediate.dense.weight"], ww[f"{p}.intermediate.dense.bias"] = r(inter, h), r(inter)
        ww[f"{p}.output.dense.weight"], ww[f"{p}.output.dense.bias"] = r(h, inter), r(h)
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            ww[f"{p}.{n}.weight"], ww[f"{p}.{n}.bias"] = ones(h), r(h)
    stored = {f"bert.{k}": v for k, v in ww.items()}
    stored["cls.predictions.bias"] = r(cfg["vocab_size"])
    stored["cls.predictions.transform.dense.weight"] = r(h, h)
    stored["bert.pooler.dense.weight"] = r(h, h)
    for m in ["vocab.txt", "tokenizer_config.json"]:
        shutil.copy2(src / m, d / m)
    (d / "config.json").write_text(json.dumps(wcfg, indent=2))
    save_file(stored, str(d / "model.safetensors"))
    np.save(out / "wide-random.reference.npy", pooled(wcfg, ww, tok, texts, "max", True))

    # bin-only: the same model, weights only in pytorch_model.bin.
    d = out / "bin-only"
    d.mkdir(exist_ok=True)
    for m in meta + ["modules.json", "sentence_bert_config.json", "1_Pooling/config.json"]:
        (d / m).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / m, d / m)
    write_torch_bin(d / "pytorch_model.bin", w)
    np.save(out / "bin-only.reference.npy", pooled(cfg, w, tok, texts, "mean", True))

    # evil-bin: a pickle that would run a shell command.
    d = out / "evil-bin"
    d.mkdir(exist_ok=True)
    for m in meta:
        shutil.copy2(src / m, d / m)
    write_torch_bin(d / "pytorch_model.bin", {"embeddings.word_embeddings.weight": w["embeddings.word_embeddings.weight"]}, evil=True)
    print(f"make_test_models: wrote {out}")


if __name__ == "__main__":
    main()
