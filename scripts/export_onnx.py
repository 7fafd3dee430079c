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

Input is not trusted: every file read must be a regular file inside the model folder (a link may
lead within it, to the same file of another model folder, or into the Hugging Face cache's
blobs/), JSON and vocab files are checked before any work, pytorch_model.bin's tensor views and
sizes are checked before anything is read or allocated, and --cut-at writes only into a folder
this exporter wrote (or the model folder itself). Every failure is one line
`export_onnx: error: ...` naming the file: exit 2 for refused input, 3 for anything unexpected.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import io
import json
import math
import os
import pickle
import re
import shutil
import stat
import sys
import zipfile
from pathlib import Path
from typing import NoReturn

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
# Every file of the model folder the exporter reads or copies.
SOURCE_FILES = COPIED_FILES + ["pytorch_model.bin", "frostline.json"]
# What each JSON file of the model folder must hold (a value of this type).
JSON_SHAPES = {
    "config.json": dict,
    "tokenizer.json": dict,
    "tokenizer_config.json": dict,
    "special_tokens_map.json": dict,
    "sentence_bert_config.json": dict,
    "1_Pooling/config.json": dict,
    "modules.json": list,
    "frostline.json": dict,
}
BERT_FAMILY = {"bert"}
MS = "com.microsoft"  # ONNX Runtime's contrib-op domain (Attention, SkipLayerNormalization, BiasGelu)
# What frostline.json's "graph" says of the graphs this exporter builds; frostline refuses (and
# re-exports) a folder whose graphs predate it.
GRAPH_FORMAT = "fused-v1"
MAX_TEXT_BYTES = 256 << 20  # a JSON or vocab file; real ones are a few MB


class ExportError(Exception):
    """An input the exporter refuses; the message names the file and what is wrong. The command
    line prints it as one line and exits 2; a caller importing this module catches it."""


class ReaderBug(RuntimeError):
    """An exception from the pickle reader's own code: a bug, never reported as bad input."""


def die(msg: str) -> NoReturn:
    raise ExportError(msg)


def brief(value, limit: int = 160) -> str:
    """A short one-line text for an untrusted value or an exception (never a full repr: a
    pickle's values may be huge or nested too deeply to print)."""
    try:
        text = str(value) if isinstance(value, BaseException) else repr(value)
    except Exception:  # RecursionError, or a repr that fails
        text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clip(text: str, limit: int = 60) -> str:
    """An untrusted name, on one line and cut short."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def regular_file(path: Path) -> os.stat_result:
    """stat() of `path` (links followed), refusing anything but a regular file: a device such as
    /dev/zero never ends, a FIFO blocks the reader."""
    try:
        st = os.stat(path)
    except OSError as e:
        die(f"{path}: {e.strerror}")
    if not stat.S_ISREG(st.st_mode):
        die(f"{path} is not a regular file (a device, FIFO, socket or folder); only files are read")
    return st


def model_folder_of(target: Path, rel: str) -> Path | None:
    """The folder that holds `target` as its file `rel`, when that folder is a model folder
    (config.json plus weights or a graph)."""
    depth = len(Path(rel).parts)
    if target.parts[-depth:] != Path(rel).parts:
        return None
    folder = target.parents[depth - 1]
    weights = ("model.safetensors", "pytorch_model.bin", "model.onnx")
    if (folder / "config.json").is_file() and any((folder / w).is_file() for w in weights):
        return folder
    return None


def link_allowed(root: Path, rel: str, target: Path) -> bool:
    """Where a file of the model folder `root` (resolved) may lead: inside the folder; to the
    same file of another model folder (a folder of links to a model); or, for a snapshot of the
    Hugging Face cache (`<repo>/snapshots/<rev>/`), into that repo's `blobs/`. Anything else
    (`vocab.txt -> ~/.ssh/id_rsa`) would copy a file from outside into the output."""
    if target.is_relative_to(root):
        return True
    if root.parent.name == "snapshots" and target.parent == root.parent.parent / "blobs":
        return True
    return model_folder_of(target, rel) is not None


def source_file(src: Path, rel: str) -> Path | None:
    """`src/rel` when the model folder has it, else None. It must be a regular file, and a link
    (or a linked folder on its path) must stay where `link_allowed` says."""
    path = src / rel
    if not os.path.lexists(path):
        return None
    root = Path(os.path.realpath(src))
    target = Path(os.path.realpath(path))
    if not link_allowed(root, rel, target):
        die(f"{path} links to {target}, outside the model folder {root}: copy the file into the "
            f"folder (a link may lead only within it, or to the same file of another model folder)")
    if not target.exists():
        die(f"{path} is a broken link (to {target})")
    regular_file(path)
    return path


def read_text(path: Path) -> str:
    """A UTF-8 text file of the model folder, size-capped."""
    if regular_file(path).st_size > MAX_TEXT_BYTES:
        die(f"{path} is larger than {MAX_TEXT_BYTES >> 20} MiB: not a model folder's text file")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        die(f"{path} is not UTF-8 text ({brief(e)})")


def read_json(path: Path, shape: type = dict):
    """A JSON file holding a value of type `shape` (an object unless said otherwise)."""
    try:
        value = json.loads(read_text(path))
    except ValueError as e:  # JSONDecodeError, or an integer too long to convert
        die(f"{path} is not valid JSON ({brief(e)})")
    except RecursionError:
        die(f"{path} is nested too deeply to be a model folder's JSON file")
    if not isinstance(value, shape):
        want = "an object" if shape is dict else "a list"
        die(f"{path} holds a JSON {type(value).__name__}, not {want}")
    return value


def int_field(cfg: dict, key: str, path: Path, least: int = 1) -> int:
    v = cfg.get(key)
    if type(v) is not int or v < least:
        die(f"{path}: {key} is {brief(v)}; an integer >= {least} is needed")
    return v


def read_config(src: Path) -> dict:
    """config.json, with the fields the graph builder uses checked (as integers, not strings)."""
    path = source_file(src, "config.json")
    if path is None:
        die(f"{src / 'config.json'} not found: --model must be a Hugging Face model folder")
    cfg = read_json(path)
    if "model_type" in cfg and not isinstance(cfg["model_type"], str):
        die(f"{path}: model_type is {brief(cfg['model_type'])}, not a name")
    if "num_hidden_layers" in cfg or cfg.get("model_type") in BERT_FAMILY:
        int_field(cfg, "num_hidden_layers", path, least=0)
    if cfg.get("model_type") in BERT_FAMILY:
        hidden, heads = int_field(cfg, "hidden_size", path), int_field(cfg, "num_attention_heads", path)
        if hidden % heads:
            die(f"{path}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
        eps = cfg.get("layer_norm_eps", 1e-12)
        if type(eps) not in (int, float) or not 0 < eps < 1:
            die(f"{path}: layer_norm_eps is {brief(eps)}; a small positive number is needed")
    return cfg


def check_source(src: Path) -> dict:
    """Checks the model folder before any work: every file the exporter reads or copies is a
    regular file that stays in its lane (`source_file`), each JSON file parses to what it must
    hold, tokenizer.json is a tokenizer, vocab.txt is UTF-8. Returns config.json."""
    if not src.is_dir():
        die(f"{src} is not a folder: --model must be a Hugging Face model folder")
    for rel in SOURCE_FILES:
        source_file(src, rel)
    cfg = read_config(src)
    for rel, shape in JSON_SHAPES.items():
        path = source_file(src, rel)
        if path is not None and rel != "config.json":
            value = read_json(path, shape)
            if rel == "tokenizer.json" and not isinstance(value.get("model"), dict):
                die(f"{path} is not a tokenizer: its \"model\" object is missing")
    vocab = source_file(src, "vocab.txt")
    if vocab is not None:
        read_text(vocab)
    return cfg


class TorchArchive:
    """Reads the tensors of a PyTorch `torch.save` zip file without torch: the pickle is replayed
    by an unpickler that knows only how to rebuild tensors from the archive's storages and plain
    containers; any other global in the file (code a malicious pickle would run) is refused.

    Nothing in the file is trusted: every tensor's offset, sizes and strides are checked against
    its storage before a single element is read, and what the archive may make the reader
    allocate is capped (declared member sizes, the pickle, the tensors built). Any malformed
    file ends in one ExportError naming the file."""

    DTYPES = {
        "FloatStorage": np.float32,
        "HalfStorage": np.float16,
        "DoubleStorage": np.float64,
        "BFloat16Storage": np.uint16,  # widened to float32 when read
        "LongStorage": np.int64,
        "IntStorage": np.int32,
        "ShortStorage": np.int16,
        "CharStorage": np.int8,
        "ByteStorage": np.uint8,
        "BoolStorage": np.bool_,
    }
    MAX_DIMS = 8
    MAX_INT = 1 << 48  # an offset, size or stride beyond any real tensor
    MAX_PICKLE = 16 << 20  # data.pkl of a state dict is a few MB at most
    MAX_BYTES = 8 << 30  # all members read, and all tensors built
    EXPANSION = 16  # torch.save stores members uncompressed: more than this is a zip bomb

    def __init__(self, path: Path):
        self.path = path
        self.on_disk = regular_file(path).st_size
        # Bytes the archive may still make us read (its members' declared sizes).
        self.read_left = min(self.MAX_BYTES, self.EXPANSION * self.on_disk + (64 << 20))
        self.read_total = 0
        self.built = 0
        self.raw: dict[str, bytes] = {}
        self.storages: dict[tuple[str, str], np.ndarray] = {}
        # (storage key, storage numel, offset, sizes, strides) of every tensor built: checked again
        # by the fuzzer (scripts/fuzz_torch_bin.py).
        self.views: list[tuple] = []
        try:
            self.zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            die(f"{path} is not a zip archive: only the torch.save format of PyTorch >= 1.6 is read "
                f"without torch (convert it once with: python -c \"import torch, safetensors.torch as s; "
                f"s.save_file(torch.load('{path}'), 'model.safetensors')\")")
        except (ExportError, MemoryError):
            raise
        except Exception as e:
            die(f"{path}: not a readable zip archive ({type(e).__name__}: {brief(e)})")
        pkls = [n for n in self.zip.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkls) != 1:
            die(f"{path}: expected one data.pkl in the archive, found {len(pkls)}")
        self.root = pkls[0][: -len("data.pkl")]
        order = f"{self.root}byteorder"
        if order in self.zip.namelist() and self.member(order, "the byte order", 64).strip() != b"little":
            die(f"{path}: a big-endian archive; only little-endian ones are read")

    @contextlib.contextmanager
    def reading(self, what: str):
        """Turns whatever a malformed archive makes zipfile or the unpickler raise into one
        ExportError; the reader's own bugs (ReaderBug) and MemoryError go through."""
        try:
            yield
        except (ExportError, ReaderBug, MemoryError):
            raise
        except Exception as e:
            die(f"{self.path}: {what} ({type(e).__name__}: {brief(e)})")

    def member(self, name: str, what: str, cap: int | None = None) -> bytes:
        """The bytes of one archive member, its declared size checked before anything is read."""
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            die(f"{self.path}: {what} is {name!r}, which is not in the archive")
        size = info.file_size
        if cap is not None and size > cap:
            die(f"{self.path}: {name} declares {size} bytes; {what} is at most {cap}")
        if size > self.read_left:
            die(f"{self.path}: {name} declares {size} bytes, which with the {self.read_total} "
                f"read before is more than this {self.on_disk}-byte archive may "
                f"expand to (torch.save stores its members uncompressed; a zip bomb?)")
        self.read_left -= size
        self.read_total += size
        with self.reading(f"cannot read {name}"):
            return self.zip.read(info)

    def storage(self, kind: str, key) -> "_Storage":
        """The storage `key` as a flat array of `kind` (its bytes read once, whatever views of
        whichever dtype share them, as torch allows)."""
        if type(key) is not str or not key.isalnum() or len(key) > 64:
            die(f"{self.path}: a storage key is {brief(key)}, not a name like '0'")
        if (key, kind) not in self.storages:
            if key not in self.raw:
                self.raw[key] = self.member(f"{self.root}data/{key}", f"storage {key}")
            raw = self.raw[key]
            dtype = np.dtype(self.DTYPES[kind]).newbyteorder("<")
            if len(raw) % dtype.itemsize:
                die(f"{self.path}: storage {key} holds {len(raw)} bytes, not a whole number of "
                    f"{kind} elements ({dtype.itemsize} bytes each)")
            flat = np.frombuffer(raw, dtype=dtype)
            if kind == "BFloat16Storage":
                flat = (flat.astype(np.uint32) << 16).view(np.float32)
            self.storages[key, kind] = flat
        return _Storage(key, self.storages[key, kind])

    # -- what the pickle may call -----------------------------------------------------------

    def find_class(self, module: str, name: str):
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return _own_code(self.rebuild)
        if (module, name) == ("collections", "OrderedDict"):
            return _own_code(self.ordered_dict)
        if module == "torch" and name in self.DTYPES:
            return _StorageType(name)
        die(f"{self.path}: the pickle asks for {clip(module)}.{clip(name)}; only tensors "
            f"are read (nothing in the file is executed)")

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, numel)
        if not (type(pid) is tuple and len(pid) >= 3 and pid[0] == "storage"):
            die(f"{self.path}: unexpected persistent id {brief(pid)}")
        kind = pid[1].name if isinstance(pid[1], _StorageType) else pid[1]
        if type(kind) is not str or kind not in self.DTYPES:
            die(f"{self.path}: unsupported storage type {brief(kind)}")
        return self.storage(kind, pid[2])

    def ordered_dict(self, *args):
        # torch.save writes an OrderedDict empty and fills it item by item (SETITEMS).
        if args:
            die(f"{self.path}: an OrderedDict is built from arguments; torch.save never does that")
        return collections.OrderedDict()

    def rebuild(self, *args):
        # _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]);
        # _rebuild_tensor(storage, offset, size, stride).
        if len(args) < 4:
            die(f"{self.path}: a tensor is rebuilt from {len(args)} arguments, not 4 or more")
        storage, offset, size, stride = args[:4]
        if not isinstance(storage, _Storage):
            die(f"{self.path}: a tensor is rebuilt from a {type(storage).__name__}, not a storage")
        offset, size, stride = self.geometry(storage, offset, size, stride)
        return self.gather(storage, offset, size, stride)

    # -- tensors from storages -----------------------------------------------------------------

    def number(self, value, what: str) -> int:
        if type(value) is not int or not 0 <= value <= self.MAX_INT:
            die(f"{self.path}: a tensor's {what} is {brief(value)}; an integer in 0..2^48 is needed")
        return value

    def geometry(self, storage: "_Storage", offset, size, stride) -> tuple[int, tuple, tuple]:
        """The view's offset, sizes and strides, checked: non-negative integers, at most MAX_DIMS
        dimensions, and every element it reaches inside the storage."""
        numel = storage.flat.size
        offset = self.number(offset, "storage offset")
        for v, what in ((size, "size"), (stride, "stride")):
            if type(v) not in (tuple, list) or len(v) > self.MAX_DIMS:
                die(f"{self.path}: a tensor's {what} is {brief(v)}; a tuple of at most "
                    f"{self.MAX_DIMS} integers is needed")
        if len(size) != len(stride):
            die(f"{self.path}: a tensor has {len(size)} sizes but {len(stride)} strides")
        size = tuple(self.number(n, "size") for n in size)
        stride = tuple(self.number(s, "stride") for s in stride)
        if math.prod(n for n in size if n) > self.MAX_INT:  # numpy could not even shape it
            die(f"{self.path}: a tensor's sizes {list(size)} multiply to more than 2^48")
        if 0 in size:  # no element is read; the offset may be the storage's end
            if offset > numel:
                die(f"{self.path}: an empty tensor starts at {offset}, past storage {storage.key}'s "
                    f"{numel} elements")
            return offset, size, stride
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= numel:
            die(f"{self.path}: a tensor {list(size)} with strides {list(stride)} at offset {offset} "
                f"reaches element {last}, outside storage {storage.key}'s {numel} elements")
        return offset, size, stride

    def gather(self, storage: "_Storage", offset: int, size: tuple, stride: tuple) -> np.ndarray:
        """A C-contiguous copy of the checked view (no as_strided: indices are computed, and
        numpy checks them again when indexing)."""
        flat, count = storage.flat, math.prod(size)
        contiguous = all(s == math.prod(size[i + 1:]) for i, (n, s) in enumerate(zip(size, stride)) if n != 1)
        cost = count * flat.itemsize + (0 if contiguous else count * 8)  # + the index array
        if self.built + cost > min(self.MAX_BYTES, 4 * self.read_total + (64 << 20)):
            die(f"{self.path}: the tensors would take more than "
                f"{min(self.MAX_BYTES, 4 * self.read_total + (64 << 20))} bytes, over four times the "
                f"storages they view (stride-0 views blown up?)")
        self.built += cost
        if count == 0:
            out = np.zeros(size, dtype=flat.dtype)
        elif contiguous:
            out = flat[offset:offset + count].reshape(size).copy()
        else:
            index = np.full((1,) * len(size), offset, dtype=np.int64)
            for axis, (n, s) in enumerate(zip(size, stride)):
                shape = [1] * len(size)
                shape[axis] = n
                index = index + (np.arange(n, dtype=np.int64) * s).reshape(shape)
            out = flat[index]
        self.views.append((storage.key, flat.size, offset, size, stride))
        return out

    def tensors(self) -> dict[str, np.ndarray]:
        """The state dict's tensors by name (each a contiguous copy owning its data)."""
        try:
            pkl = self.member(f"{self.root}data.pkl", "data.pkl", self.MAX_PICKLE)
            with self.reading("malformed pickle in data.pkl"):
                state = _StrictUnpickler(io.BytesIO(pkl), self).load()
        finally:
            self.zip.close()
        if not isinstance(state, dict):
            die(f"{self.path}: the archive holds a {type(state).__name__}, not a state dict")
        out = {}
        for k, v in state.items():
            if type(k) is not str:
                die(f"{self.path}: a state dict key is {brief(k)}, not a name")
            if type(v) is not np.ndarray:
                die(f"{self.path}: {brief(k, 80)} is a {type(v).__name__}, not a tensor")
            if not (v.flags.c_contiguous and v.flags.owndata):
                raise ReaderBug(f"{k}: a tensor that is not a contiguous copy")
            out[k] = v
        return out


class _StorageType:
    """What the pickle gets for `torch.FloatStorage` & co.: the storage type's name, nothing
    callable."""

    def __init__(self, name: str):
        self.name = name


class _Storage:
    """A storage read from the archive: the only thing a tensor may be rebuilt from."""

    def __init__(self, key: str, flat: np.ndarray):
        self.key, self.flat = key, flat


def _own_code(fn):
    """An exception other than ExportError in one of the reader's own callbacks is a bug: it is
    raised as ReaderBug, not reported as a malformed pickle."""

    @functools.wraps(fn)
    def wrapped(*args):
        try:
            return fn(*args)
        except (ExportError, MemoryError):
            raise
        except Exception as e:
            raise ReaderBug(f"{fn.__name__}: {type(e).__name__}: {brief(e)}") from e

    return wrapped


def _scalar(value) -> bool:
    return type(value) in (str, int, float, bool, bytes, type(None))


class _Opcodes(dict):
    """The unpickler's dispatch table: an unknown opcode is named, not a bare KeyError."""

    def __missing__(self, code: int):
        raise pickle.UnpicklingError(f"unknown opcode {code:#04x}")


class _StrictUnpickler(pickle._Unpickler):
    """Python's own pure-Python unpickler (memo in a dict, reads bounded by the in-memory
    pickle) with every global and persistent id sent to the archive, and the opcodes that would
    hash or call into unchecked objects narrowed: dict and set keys must be plain scalars (hashing
    a deeply nested tuple overflows the C stack), SETITEM(S) fill dicts, APPEND(S) lists,
    ADDITEMS sets, BUILD applies only to an OrderedDict (torch's `_metadata`, dropped), and
    protocol 5's out-of-band buffers are refused."""

    dispatch = _Opcodes(pickle._Unpickler.dispatch)

    def __init__(self, file, archive: TorchArchive):
        super().__init__(file)
        self.find_class = _own_code(archive.find_class)
        self.persistent_load = _own_code(archive.persistent_load)
        self.archive = archive

    def refuse(self, what: str) -> NoReturn:
        die(f"{self.archive.path}: the pickle {what}; a state dict never does")

    def below_mark(self):
        """The object under the last MARK (what SETITEMS/APPENDS/ADDITEMS fill)."""
        if not self.metastack or not self.metastack[-1]:
            self.refuse("fills a container that is not there")
        return self.metastack[-1][-1]

    def keys_ok(self, keys) -> None:
        if not all(_scalar(k) for k in keys):
            self.refuse("uses a container as a dict key or set item")

    def load_setitem(self):
        if len(self.stack) < 3 or not isinstance(self.stack[-3], dict):
            self.refuse("sets an item of something that is not a dict")
        self.keys_ok([self.stack[-2]])
        pickle._Unpickler.load_setitem(self)

    def load_setitems(self):
        if not isinstance(self.below_mark(), dict):
            self.refuse("sets items of something that is not a dict")
        self.keys_ok(self.stack[0::2])
        pickle._Unpickler.load_setitems(self)

    def load_dict(self):
        self.keys_ok(self.stack[0::2])
        pickle._Unpickler.load_dict(self)

    def load_additems(self):
        if type(self.below_mark()) is not set:
            self.refuse("adds items to something that is not a set")
        self.keys_ok(self.stack)
        pickle._Unpickler.load_additems(self)

    def load_frozenset(self):
        self.keys_ok(self.stack)
        pickle._Unpickler.load_frozenset(self)

    def load_append(self):
        if len(self.stack) < 2 or type(self.stack[-2]) is not list:
            self.refuse("appends to something that is not a list")
        pickle._Unpickler.load_append(self)

    def load_appends(self):
        if type(self.below_mark()) is not list:
            self.refuse("appends to something that is not a list")
        pickle._Unpickler.load_appends(self)

    def load_out_of_band(self):
        # Protocol 5's bytearrays and buffers: never in a state dict, and BYTEARRAY8 allocates
        # its declared length before reading a byte.
        self.refuse("uses protocol 5 buffers")

    def load_build(self):
        state = self.stack.pop()
        if not self.stack or type(self.stack[-1]) is not collections.OrderedDict:
            self.refuse("sets the state of something other than an OrderedDict")
        if not (type(state) is dict and all(type(k) is str for k in state)):
            self.refuse("sets an OrderedDict's attributes from something other than names")

    for _op, _fn in ((pickle.SETITEM, load_setitem), (pickle.SETITEMS, load_setitems),
                     (pickle.DICT, load_dict), (pickle.ADDITEMS, load_additems),
                     (pickle.FROZENSET, load_frozenset), (pickle.APPEND, load_append),
                     (pickle.APPENDS, load_appends), (pickle.BUILD, load_build),
                     (pickle.BYTEARRAY8, load_out_of_band), (pickle.NEXT_BUFFER, load_out_of_band),
                     (pickle.READONLY_BUFFER, load_out_of_band)):
        dispatch[_op[0]] = _fn
    del _op, _fn


def canonical(weights: dict[str, np.ndarray], source: Path, whole: bool = True) -> dict[str, np.ndarray]:
    """The encoder's tensors under the names the graph builder and frostline read: an
    architecture prefix (`bert.`) stripped, task heads and the pooler (`cls.*`, `pooler.*`)
    dropped. `whole`: a full model (an override may hold only some layers)."""
    out = {}
    for k, v in weights.items():
        name = k.split(".", 1)[1] if k.startswith("bert.") else k
        if name.startswith(("embeddings.", "encoder.")):
            out[name] = v
    if whole and not any(k.startswith("embeddings.") for k in out):
        die(f"{source}: no embeddings.* tensors found (with or without a bert. prefix): is this a BERT model?")
    return out


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file, a malformed one reported as such."""
    from safetensors.numpy import load_file

    regular_file(path)
    try:
        return load_file(str(path))
    except MemoryError:
        raise
    except Exception as e:
        die(f"{path} is not a readable safetensors file ({type(e).__name__}: {brief(e)})")


def load_weights(src: Path, override: Path | None = None) -> tuple[dict[str, np.ndarray], str]:
    """The encoder's weights (canonical names) and the file they came from."""
    if (path := source_file(src, "model.safetensors")) is not None:
        weights = read_safetensors(path)
    elif (path := source_file(src, "pytorch_model.bin")) is not None:
        weights = TorchArchive(path).tensors()
    else:
        die(f"{src} has neither model.safetensors nor pytorch_model.bin: the graph builder needs the weights")
    weights = canonical(weights, path)
    if override is not None:
        for k, v in canonical(read_safetensors(override), override, whole=False).items():
            if k not in weights or weights[k].shape != v.shape:
                die(f"{override}: tensor {k!r} does not match a tensor of {path} in name and shape")
            weights[k] = v
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}, path.name


def special_tokens(conf: dict, conf_path: Path) -> dict[str, str]:
    """The special tokens tokenizer_config.json names (HF's defaults otherwise), as strings."""
    special = {}
    for k, default in [("unk_token", "[UNK]"), ("cls_token", "[CLS]"), ("sep_token", "[SEP]"), ("pad_token", "[PAD]")]:
        t = conf.get(k, default)
        if isinstance(t, dict):
            t = t.get("content")
        if not isinstance(t, str) or not t:
            die(f"{conf_path}: {k} is {brief(t)}, not a token")
        special[k] = t
    return special


def wordpiece_tokenizer(src: Path, dst: Path) -> None:
    """tokenizer.json for a folder that has only vocab.txt: BERT's WordPiece with its normaliser
    (lower-casing and accent stripping as tokenizer_config.json says; HF's defaults otherwise)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab_path = src / "vocab.txt"
    vocab = {}
    for i, line in enumerate(read_text(vocab_path).splitlines()):
        vocab.setdefault(line.rstrip("\r"), i)
    conf_path = source_file(src, "tokenizer_config.json")
    conf = read_json(conf_path) if conf_path is not None else {}
    conf_path = conf_path or src / "tokenizer_config.json"
    special = special_tokens(conf, conf_path)
    for k, t in special.items():
        if t not in vocab:
            die(f"{vocab_path}: the {k} {t!r} is not in the vocabulary")
    strip_accents = conf.get("strip_accents")
    if strip_accents not in (None, True, False):
        die(f"{conf_path}: strip_accents is {brief(strip_accents)}, not true, false or null")
    try:
        tok = Tokenizer(models.WordPiece(vocab, unk_token=special["unk_token"], max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=bool(conf.get("tokenize_chinese_chars", True)),
            strip_accents=strip_accents, lowercase=bool(conf.get("do_lower_case", True)))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        cls, sep = special["cls_token"], special["sep_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
        tok.decoder = decoders.WordPiece(prefix="##")
        for t in special.values():
            tok.add_special_tokens([t])
    except Exception as e:  # the tokenizers library refuses what it cannot build
        die(f"{vocab_path}: no WordPiece tokenizer can be built from it and {conf_path.name} ({brief(e)})")
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
    """Builds the BERT encoder graph node by node (opset 17: LayerNormalization is native; the
    layers on ONNX Runtime's contrib ops, see `layer`)."""

    def __init__(self, cfg: dict, weights: dict[str, np.ndarray]):
        from onnx import TensorProto, helper, numpy_helper

        self.h, self.nh_, self.th = helper, numpy_helper, TensorProto
        self.cfg, self.w = cfg, weights
        self.nodes: list = []
        self.value_info: list = []
        self.inits: dict[str, object] = {}
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def require(self, key: str) -> None:
        if key not in self.w:
            die(f"weight {key!r} missing from model.safetensors (does config.json match the weights?)")

    def weight(self, key: str, transpose: bool = False) -> str:
        self.require(key)
        if key not in self.inits:
            arr = self.w[key].astype(np.float32)
            self.inits[key] = self.nh_.from_array(arr.T.copy() if transpose else arr, key)
        return key

    def array(self, name: str, arr: np.ndarray) -> str:
        """An initializer made here (the packed Q/K/V weights), not read from the weights."""
        self.inits[name] = self.nh_.from_array(np.ascontiguousarray(arr), name)
        return name

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

    def embeddings(self) -> str:
        words = self.op("Gather", [self.weight("embeddings.word_embeddings.weight"), "input_ids"], axis=0)
        types = self.op("Gather", [self.weight("embeddings.token_type_embeddings.weight"), "token_type_ids"], axis=0)
        # Position rows 0..seq: slice with 1-D starts/ends from Shape(input_ids)[1:2]. (A scalar
        # Range + Gather is rewritten by ORT's optimizer into a Slice that fails at run time.)
        seq = self.op("Slice", [self.op("Shape", ["input_ids"]), self.const([1]), self.const([2]), self.const([0])])
        pos = self.op("Slice", [self.weight("embeddings.position_embeddings.weight"), self.const([0]), seq, self.const([0])])
        summed = self.op("Add", [self.op("Add", [words, types]), pos])
        return self.layer_norm(summed, "embeddings.LayerNorm")

    def mask(self) -> str:
        # Attention takes the raw [batch, seq] 1/0 mask as int32 and masks padded keys itself.
        return self.op("Cast", ["attention_mask"], to=self.th.INT32)

    def layer(self, x: str, mask: str, i: int, prefix: str = "") -> str:
        """One encoder layer on ONNX Runtime's fused contrib ops (domain com.microsoft, CPU and
        CUDA): attention as one `Attention` node (the Q, K, V projections as one
        [hidden, 3·hidden] product, their biases, scaling, the padding mask and softmax inside),
        the FFN's first product as MatMul + BiasGelu (bias and exact erf GELU in one pass).
        The int8 quantizer splits each Attention into its QKV product (made int8) and a
        MultiHeadAttention node (scripts/quantize_onnx.py).

        Measured with ONNX Runtime 1.32 on CPU (2 threads): 0.83× the time of the unfused graph
        on short texts; on 200-256-token documents Attention ran 0.92× the time of MatMul +
        MultiHeadAttention. `SkipLayerNormalization` ran ~8× slower than LayerNormalization + Add
        on CPU, so the residual stays Add + LayerNormalization. `prefix`: the weights of a
        branch above a frost line (`branch.<name>.encoder.layer.i…`, see HeadsGraph)."""
        p = f"{prefix}encoder.layer.{i}"
        heads = int(self.cfg["num_attention_heads"])
        hidden = int(self.cfg["hidden_size"])
        sa = f"{p}.attention.self"
        parts = ("query", "key", "value")
        for m in parts:
            self.require(f"{sa}.{m}.weight")
            self.require(f"{sa}.{m}.bias")
        qkv_w = np.concatenate([self.w[f"{sa}.{m}.weight"].astype(np.float32).T for m in parts], axis=1)
        qkv_b = np.concatenate([self.w[f"{sa}.{m}.bias"].astype(np.float32) for m in parts])
        ctx = self.typed(self.op("Attention", [x, self.array(f"{sa}.qkv.weight", qkv_w), self.array(f"{sa}.qkv.bias", qkv_b), mask],
                                 domain=MS, num_heads=heads), hidden)
        attn = self.residual_norm(ctx, x, f"{p}.attention.output.dense", f"{p}.attention.output.LayerNorm")
        inter = self.op("MatMul", [attn, self.weight(f"{p}.intermediate.dense.weight", transpose=True)])
        inter = self.op("BiasGelu", [inter, self.weight(f"{p}.intermediate.dense.bias")], domain=MS)
        self.typed(inter, int(self.w[f"{p}.intermediate.dense.weight"].shape[0]))
        return self.residual_norm(inter, attn, f"{p}.output.dense", f"{p}.output.LayerNorm")

    def typed(self, name: str, width: int) -> str:
        """Declares a contrib op's output type and shape: ONNX's shape inference does not know
        the com.microsoft ops, and ONNX Runtime's quantizers need every MatMul's type."""
        self.value_info.append(self.h.make_tensor_value_info(name, self.th.FLOAT, ["batch", "sequence", width]))
        return name

    def residual_norm(self, x: str, residual: str, dense: str, norm: str) -> str:
        """LayerNorm(x·W + b + residual)."""
        y = self.op("Add", [self.op("MatMul", [x, self.weight(f"{dense}.weight", transpose=True)]), self.weight(f"{dense}.bias")])
        return self.layer_norm(self.op("Add", [y, residual]), norm)

    def build(self, cut_at: int | None):
        layers = int(self.cfg["num_hidden_layers"])
        upto = layers if cut_at is None else cut_at
        x = self.embeddings()
        mask = self.mask() if upto > 0 else None
        for i in range(upto):
            x = self.layer(x, mask, i)
        out_name = "last_hidden_state" if cut_at is None else "hidden_state"
        self.nodes.append(self.h.make_node("Identity", [x], [out_name]))
        ids = [self.h.make_tensor_value_info(n, self.th.INT64, ["batch", "sequence"]) for n in ("input_ids", "attention_mask", "token_type_ids")]
        out = self.h.make_tensor_value_info(out_name, self.th.FLOAT, ["batch", "sequence", int(self.cfg["hidden_size"])])
        graph = self.h.make_graph(self.nodes, "frostline_bert", ids, [out], initializer=list(self.inits.values()),
                                  value_info=self.value_info)
        model = self.h.make_model(graph, opset_imports=[self.h.make_opsetid("", 17), self.h.make_opsetid(MS, 1)], producer_name="frostline")
        model.ir_version = 8
        self.h.set_model_props(model, {"frostline.graph": GRAPH_FORMAT})
        return model, out_name


HEADS_FORMAT = "frostline-heads-v1"
HEADS_SPEC = "heads.json"  # the served model's description: written into the folder and the graph
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def field(obj: dict, key: str, shape, where: str):
    """obj[key], refused unless it is of type `shape` (a spec is read, never trusted)."""
    value = obj.get(key)
    if not isinstance(value, shape) or isinstance(value, bool) and shape is not bool:
        die(f"{where}: {key} is {brief(value)}, not {getattr(shape, '__name__', shape)}")
    return value


def read_heads_spec(folder: Path, cfg: dict) -> dict:
    """--with-heads FOLDER: heads.json (what frostline wrote: tasks, classes, decisions, the
    branches above the frost line), heads.safetensors and branch-<name>.safetensors, checked
    before anything is built."""
    path = folder / HEADS_SPEC
    spec = read_json(path)
    if spec.get("format") != HEADS_FORMAT:
        die(f"{path}: format is {brief(spec.get('format'))}, not {HEADS_FORMAT!r}")
    layers = int(cfg["num_hidden_layers"])
    line = spec.get("frost_line")
    if line is not None and (not isinstance(line, int) or isinstance(line, bool) or not 0 <= line <= layers):
        die(f"{path}: frost_line is {brief(line)}, not a layer in 0..{layers} or null")
    pooling = field(spec, "pooling", dict, str(path))
    if pooling.get("mode") not in ("mean", "cls", "max", "mean_sqrt_len") or not isinstance(pooling.get("normalize"), bool):
        die(f"{path}: pooling is {brief(pooling)}, not a mode (mean, cls, max, mean_sqrt_len) and normalize")
    branches = field(spec, "branches", list, str(path))
    names = []
    for b in branches:
        name = field(b, "name", str, f"{path}: a branch")
        if not SAFE_NAME.match(name) or name in names:
            die(f"{path}: branch name {brief(name)} is not a plain unique name")
        names.append(name)
        if line is None and b.get("weights"):
            die(f"{path}: branch {name} has weights but there is no frost line to put them above")
    tasks = field(spec, "tasks", list, str(path))
    if not tasks:
        die(f"{path}: no tasks")
    for t in tasks:
        where = f"{path}: task {brief(t.get('name'))}"
        name = field(t, "name", str, where)
        if not SAFE_NAME.match(name):
            die(f"{where}: not a plain name (letters, digits, _ . -)")
        if t.get("branch") not in names:
            die(f"{where}: branch {brief(t.get('branch'))} is not one of {names}")
        if t.get("input") not in ("sentence", "words") or t.get("activation") not in ("softmax", "sigmoid"):
            die(f"{where}: input {brief(t.get('input'))} / activation {brief(t.get('activation'))} unknown")
        classes = field(t, "classes", list, where)
        if not classes or not all(isinstance(c, str) for c in classes):
            die(f"{where}: classes must be a non-empty list of texts")
        head = field(t, "head", dict, where)
        depth = head.get("layers")
        if depth not in (1, 2):
            die(f"{where}: head layers {brief(depth)}, not 1 or 2")
        if t["input"] == "words":
            k = t.get("token_layer")
            if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= layers:
                die(f"{where}: token_layer {brief(k)} is not a layer in 0..{layers}")
    weights = read_safetensors(folder / "heads.safetensors")
    for t in tasks:
        for j in range(t["head"]["layers"]):
            for part in ("weight", "bias"):
                key = f"heads.{t['name']}.{j}.{part}"
                if key not in weights:
                    die(f"{folder / 'heads.safetensors'}: {key} is missing")
    spec["_heads"] = weights
    spec["_branches"] = {}
    for b in branches:
        if b.get("weights"):
            file = folder / f"branch-{b['name']}.safetensors"
            tensors = read_safetensors(file)
            for k in tensors:
                m = re.match(r"encoder\.layer\.(\d+)\.", k)
                if m is None or int(m.group(1)) < line:
                    die(f"{file}: {k!r} is not a tensor of an encoder layer at or above frost line {line}")
            spec["_branches"][b["name"]] = tensors
    return spec


class HeadsGraph(BertGraph):
    """The encoder, pooling and every task's head in one graph (`--with-heads`): the layers below
    the frost line once, each branch's layers above it (a task's own adapter merged, or the one
    shared tuned copy), then per task its probabilities — softmax (classification) or sigmoid
    (multi-label) over a pooled vector, or over the word vectors of a token task, whose token
    spans the caller gives in `word_spans` (heads.json says which sub-tokens make a word). Decisions (argmax, thresholds,
    BIO decoding) stay with the caller: they are in heads.json."""

    def __init__(self, cfg: dict, weights: dict[str, np.ndarray], spec: dict):
        super().__init__(cfg, weights)
        self.spec = spec
        for b, tensors in spec["_branches"].items():
            for k, v in tensors.items():
                if k not in weights or weights[k].shape != v.shape:
                    die(f"branch-{b}.safetensors: tensor {k!r} does not match the model's in name and shape")
                self.w[f"branch.{b}.{k}"] = np.ascontiguousarray(v, dtype=np.float32)
        for k, v in spec["_heads"].items():
            self.w[k] = np.ascontiguousarray(v, dtype=np.float32)

    def head_linear(self, x: str, key: str, gelu: bool) -> str:
        y = self.op("MatMul", [x, self.weight(f"{key}.weight", transpose=True)])
        if gelu:
            return self.op("BiasGelu", [y, self.weight(f"{key}.bias")], domain=MS)
        return self.op("Add", [y, self.weight(f"{key}.bias")])

    def pool(self, states: str) -> str:
        """The sentence vector as frostline pools it: over the real tokens (attention_mask)."""
        mode, normalize = self.spec["pooling"]["mode"], self.spec["pooling"]["normalize"]
        if mode == "cls":
            v = self.op("Gather", [states, self.const(0)], axis=1)
        else:
            mask = self.op("Unsqueeze", [self.op("Cast", ["attention_mask"], to=self.th.FLOAT), self.const([-1])])
            if mode == "max":
                neg = self.array(self.name("neg_inf"), np.array(-np.inf, np.float32))
                keep = self.op("Cast", [mask], to=self.th.BOOL)
                v = self.op("ReduceMax", [self.op("Where", [keep, states, neg]), self.const([1])], keepdims=0)
            else:
                total = self.op("ReduceSum", [self.op("Mul", [states, mask]), self.const([1])], keepdims=0)
                count = self.op("ReduceSum", [mask, self.const([1])], keepdims=0)
                if mode == "mean_sqrt_len":
                    count = self.op("Sqrt", [count])
                v = self.op("Div", [total, count])
        if normalize:
            norm = self.op("ReduceL2", [v, self.const([-1])], keepdims=1)
            eps = self.array(self.name("eps"), np.array(1e-12, np.float32))
            v = self.op("Div", [v, self.op("Max", [norm, eps])])
        return v

    def words(self, states: str) -> str:
        """[batch, words, hidden]: per word the mean of the token states in its span
        `word_spans[b, w] = (start, end)` (end exclusive; a padding word (0, 0) stays zero)."""
        seq = self.op("Gather", [self.op("Shape", ["input_ids"]), self.const(1)], axis=0)
        pos = self.op("Unsqueeze", [self.op("Range", [self.const(0), seq, self.const(1)]), self.const([0, 1])])
        start = self.op("Gather", ["word_spans", self.const([0])], axis=2)  # [batch, words, 1]
        end = self.op("Gather", ["word_spans", self.const([1])], axis=2)
        member = self.op("And", [self.op("GreaterOrEqual", [pos, start]), self.op("Less", [pos, end])])
        member = self.op("Cast", [member], to=self.th.FLOAT)  # [batch, words, seq]
        count = self.op("Max", [self.op("ReduceSum", [member, self.const([2])], keepdims=1),
                                self.array(self.name("one"), np.array(1.0, np.float32))])
        return self.op("Div", [self.op("MatMul", [member, states]), count])

    def build_heads(self):
        spec = self.spec
        layers = int(self.cfg["num_hidden_layers"])
        line = spec["frost_line"] if spec["frost_line"] is not None else layers
        x = self.embeddings()
        mask = self.mask()
        shared = [x]  # the states after 0, 1, … layers below the frost line
        for i in range(line):
            x = self.layer(x, mask, i)
            shared.append(x)
        states: dict[str, list[str]] = {}
        outputs = []
        hidden = int(self.cfg["hidden_size"])
        pooled: dict[str, str] = {}
        for b in spec["branches"]:
            name = b["name"]
            prefix = f"branch.{name}." if name in spec["_branches"] else ""
            above = list(shared)
            for i in range(line, layers):
                above.append(self.layer(above[-1], mask, i, prefix))
            states[name] = above
            pooled[name] = self.pool(above[-1])
            self.nodes.append(self.h.make_node("Identity", [pooled[name]], [b["embedding"]]))
            outputs.append(self.h.make_tensor_value_info(b["embedding"], self.th.FLOAT, ["batch", hidden]))
        for t in spec["tasks"]:
            path = states[t["branch"]]
            key = f"heads.{t['name']}"
            if t["input"] == "words":
                x = self.words(path[t["token_layer"]])
                dims = ["batch", "words", len(t["classes"])]
            else:
                x = pooled[t["branch"]]
                dims = ["batch", len(t["classes"])]
            if t["head"]["layers"] == 2:
                x = self.head_linear(x, f"{key}.0", gelu=True)
                x = self.head_linear(x, f"{key}.1", gelu=False)
            else:
                x = self.head_linear(x, f"{key}.0", gelu=False)
            probs = self.op("Softmax" if t["activation"] == "softmax" else "Sigmoid", [x], **({"axis": -1} if t["activation"] == "softmax" else {}))
            self.nodes.append(self.h.make_node("Identity", [probs], [t["output"]]))
            outputs.append(self.h.make_tensor_value_info(t["output"], self.th.FLOAT, dims))
        inputs = [self.h.make_tensor_value_info(n, self.th.INT64, ["batch", "sequence"])
                  for n in ("input_ids", "attention_mask", "token_type_ids")]
        if any(t["input"] == "words" for t in spec["tasks"]):
            inputs.append(self.h.make_tensor_value_info("word_spans", self.th.INT64, ["batch", "words", 2]))
        graph = self.h.make_graph(self.nodes, "frostline_with_heads", inputs, outputs,
                                  initializer=list(self.inits.values()), value_info=self.value_info)
        # Opset 18: every Reduce* takes its axes as an input, as at 21, where the int8 quantizer
        # lifts the graph (the encoder's ops mean the same at 17, 18 and 21).
        model = self.h.make_model(graph, opset_imports=[self.h.make_opsetid("", 18), self.h.make_opsetid(MS, 1)],
                                  producer_name="frostline")
        model.ir_version = 8
        served = {k: v for k, v in spec.items() if not k.startswith("_")}
        self.h.set_model_props(model, {"frostline.graph": "with-heads", HEADS_FORMAT: json.dumps(served)})
        return model


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

    own = {rel.split("/")[0] for rel in COPIED_FILES} | {"model.onnx", "frostline.json", "2_Normalize", HEADS_SPEC}
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


def cut_output(src: Path, dst: Path) -> None:
    """--cut-at adds model.cut-N.onnx only to a folder that is frostline's: one this exporter
    wrote (it has frostline.json) or frostline quantized (quantization.json), or the model folder itself (frostline makes the graph there
    on demand, in any model folder it opens: model.cut-N.onnx is the name it reads it by)."""
    if not dst.exists():
        die(f"{dst} does not exist: export the model folder first with --output {dst} (without --cut-at)")
    if not dst.is_dir():
        die(f"{dst} is not a folder: --cut-at writes model.cut-N.onnx into an exported model folder")
    # An int8 folder `frostline quantize` made (quantization.json) keeps no weights: its cut
    # graphs are built from the fp32 folder it was made from.
    ours = (dst / "frostline.json").is_file() or (dst / "quantization.json").is_file()
    same = os.path.samefile(src, dst) and (dst / "model.onnx").is_file()
    if not (ours or same):
        die(f"{dst} was not written by this exporter (no frostline.json): --cut-at adds a graph only "
            f"to a folder it exported; export one with --output DIR (without --cut-at) first")


def export_cut(src: Path, dst: Path, cfg: dict, args) -> None:
    """One more graph into an existing model folder: a temp file renamed into place."""
    cut_output(src, dst)
    graph_name = f"model.cut-{args.cut_at}.onnx"
    tmp = dst / f".{graph_name}.tmp-{os.getpid()}"
    try:
        if cfg.get("model_type") in BERT_FAMILY:
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
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    print(f"export_onnx: wrote {dst / graph_name} ({route}, output {out_name!r})")


def main(argv: list[str] | None = None) -> None:
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
    ap.add_argument("--with-heads", type=Path, default=None,
                    help="a folder frostline wrote (heads.json, heads.safetensors, branch-*.safetensors): "
                         "model.onnx then holds pooling and every task's head as well")
    args = ap.parse_args(argv)

    src: Path = args.model
    cfg = check_source(src)
    layers = cfg.get("num_hidden_layers", 0)
    if args.cut_at is not None and not 0 <= args.cut_at <= layers:
        die(f"--cut-at {args.cut_at} is outside 0..{layers} (the model has {layers} layers)")
    if args.normalize and args.pooling is None:
        die("--normalize goes with --pooling (the folder's modules.json decides otherwise)")
    if args.pooling is not None and source_file(src, "modules.json") is not None:
        die(f"{src / 'modules.json'} already decides the pooling; drop --pooling/--normalize")
    if args.pooling is not None:
        int_field(cfg, "hidden_size", src / "config.json")
    bert = cfg.get("model_type") in BERT_FAMILY
    if not bert and (args.weights is not None or args.with_heads is not None):
        die("--weights and --with-heads are supported by the torch-free BERT builder only")
    if args.with_heads is not None and (args.cut_at is not None or args.pooling is not None):
        die("--with-heads builds a whole served model: drop --cut-at and --pooling")

    dst: Path = args.output
    if args.cut_at is not None:
        export_cut(src, dst, cfg, args)
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
        if args.with_heads is not None:
            return served_folder(src, out, cfg, weights, args)
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
        s = source_file(src, rel)
        if s is None or (rel == "model.safetensors" and (out / rel).exists()):
            continue
        if rel in ("modules.json", "1_Pooling/config.json") and args.pooling is not None:
            continue
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(s, out / rel)
    if source_file(src, "tokenizer.json") is None:
        if source_file(src, "vocab.txt") is None:
            die(f"{src} has neither tokenizer.json nor vocab.txt")
        wordpiece_tokenizer(src, out)
        tokenizer_from = "vocab.txt"
    if args.pooling is not None:
        pooling_files(out, cfg["hidden_size"], args.pooling, args.normalize)
    info = {
        "source": str(src),
        "route": route,
        # The layer layout of every graph in the folder (model.onnx and the cut graphs made
        # later): frostline refuses a graph-builder folder without it (made before fused graphs).
        "graph": GRAPH_FORMAT if route == "graph-builder" else "torch.onnx.export",
        "model_type": cfg.get("model_type"),
        "num_hidden_layers": cfg.get("num_hidden_layers", 0),
        "hidden_size": cfg.get("hidden_size"),
        "weights_override": str(args.weights) if args.weights else None,
        "weights_from": weights_from,
        "tokenizer_from": tokenizer_from,
        "output": out_name,
    }
    if args.pooling is not None:
        info["pooling"] = {"mode": args.pooling, "normalize": args.normalize, "from": "--pooling"}
    prefix = args.prefix if args.prefix is not None else source_prefix(src)
    if prefix:
        info["prefix"] = prefix
    (out / "frostline.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def served_folder(src: Path, out: Path, cfg: dict, weights: dict, args) -> dict:
    """--with-heads: model.onnx with pooling and the heads, the tokenizer files, heads.json (also
    in the graph's metadata_props) and frostline.json. No weights file: frostline reads this
    folder as a served model, never as a backbone."""
    import onnx

    spec = read_heads_spec(args.with_heads, cfg)
    model = HeadsGraph(cfg, weights, spec).build_heads()
    onnx.checker.check_model(model)
    onnx.save(model, str(out / "model.onnx"))
    for rel in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json"):
        s = source_file(src, rel)
        if s is not None:
            shutil.copy2(s, out / rel)
    if source_file(src, "tokenizer.json") is None:
        wordpiece_tokenizer(src, out)
    served = {k: v for k, v in spec.items() if not k.startswith("_")}
    (out / HEADS_SPEC).write_text(json.dumps(served, indent=2) + "\n")
    info = {
        "source": str(src),
        "route": "graph-builder",
        "graph": "with-heads",
        "model_type": cfg.get("model_type"),
        "num_hidden_layers": cfg.get("num_hidden_layers", 0),
        "hidden_size": cfg.get("hidden_size"),
        "heads": HEADS_SPEC,
        "output": [o.name for o in model.graph.output],
    }
    (out / "frostline.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def source_prefix(src: Path) -> str | None:
    """The input prefix the source folder records (a frostline folder re-exported, e.g. with
    tuned layers, keeps it unless --prefix says otherwise)."""
    path = source_file(src, "frostline.json")
    prefix = read_json(path).get("prefix") if path is not None else None
    if prefix is not None and not isinstance(prefix, str):
        die(f"{path}: prefix is {brief(prefix)}, not a text")
    return prefix


def same_names(src: Path, weights: dict) -> bool:
    """Whether the source file holds every encoder tensor under its canonical name (extra
    tensors such as the pooler do no harm: readers take what they need by name)."""
    from safetensors import safe_open

    with safe_open(str(src / "model.safetensors"), framework="numpy") as f:
        return set(weights) <= set(f.keys())


def cli(argv: list[str] | None = None) -> int:
    """main() with every failure as one line on stderr: a refused input exits 2; anything
    unexpected exits 3 with the exception's type and message (FROSTLINE_EXPORT_TRACEBACK=1
    prints the traceback as well, to debug the exporter itself)."""
    try:
        main(argv)
        return 0
    except ExportError as e:
        print(f"export_onnx: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("export_onnx: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("export_onnx: error: out of memory (is the model too large for this machine?)", file=sys.stderr)
        return 2
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"export_onnx: error: {where}{e.strerror or brief(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        if os.environ.get("FROSTLINE_EXPORT_TRACEBACK") == "1":
            import traceback

            traceback.print_exc()
        print(f"export_onnx: error: unexpected {type(e).__name__}: {brief(e, 400)} (a bug in the "
              f"exporter or an input it does not check; FROSTLINE_EXPORT_TRACEBACK=1 shows where)",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(cli())
