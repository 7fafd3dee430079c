#!/usr/bin/env python3
"""Mutation fuzzer for the torch-free pytorch_model.bin reader of export_onnx.py (TorchArchive).

Seeds are valid torch.save archives written here without torch (archive/data.pkl, pickle
protocol 2 as torch.save lays it out, + archive/data/<key>): every storage dtype, views with
offsets, transposed and stride-0 views, shared storages, scalars and empty tensors. First each
seed must read back exactly; then cases mutate the pickle (bit flips, byte changes, inserted
opcodes, huge or negative ints in BININT/LONG arguments, changed size/stride/offset tuples,
other names, deep nesting, huge memo indices and lengths) and the zip container (truncated,
missing, renamed or compressed members, declared sizes, flags, raw byte flips).

Each case runs the reader in-process and is counted as: read (every returned tensor a plain
C-contiguous copy of a storage dtype, every view the reader recorded inside its storage), a
clear error (one ExportError line naming the file), or a crash (anything else: another
exception, MemoryError under the child's memory limit, a failed check). The whole loop runs in
a child process, so a segfault is reported with the case that caused it (saved to
FUZZ_CRASH_DIR) instead of killing the fuzzer.

    FUZZ_SECONDS=600 fuzz_torch_bin.py        # time-bounded (default 10 s)
    FUZZ_CASES=300 fuzz_torch_bin.py          # or a fixed number of cases
    FUZZ_SEED=1 ...                           # another sequence (default 20250)

Prints `fuzz torch-bin: N cases in S s: X read, Y clear errors, Z crashes`; exits 1 on a crash.
`write_torch_bin` is also what tests/exporter_safety.rs crafts its archives with.
"""

from __future__ import annotations

import collections
import importlib.util
import io
import json
import os
import pickle
import random
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import types
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # importing export_onnx leaves no __pycache__ in scripts/

# storage type -> (numpy dtype of its bytes, dtype the reader returns)
KINDS = {
    "FloatStorage": ("<f4", "float32"),
    "HalfStorage": ("<f2", "float16"),
    "DoubleStorage": ("<f8", "float64"),
    "BFloat16Storage": ("<u2", "float32"),
    "LongStorage": ("<i8", "int64"),
    "IntStorage": ("<i4", "int32"),
    "ShortStorage": ("<i2", "int16"),
    "CharStorage": ("i1", "int8"),
    "ByteStorage": ("u1", "uint8"),
    "BoolStorage": ("?", "bool"),
}


# -- writing torch.save archives without torch ------------------------------------------------

class Tensor:
    """A view (offset, size, stride) of storage `key` as torch.save pickles it."""

    def __init__(self, key: str, kind: str, numel: int, offset: int, size, stride):
        self.key, self.kind, self.numel = key, kind, numel
        self.offset, self.size, self.stride = offset, size, stride


def torch_pickle(state: dict, protocol: int = 2, metadata: bool = True) -> bytes:
    """data.pkl for `state` (name -> Tensor, or any picklable value): fake `torch` modules give
    the pickle the globals torch.load expects (torch._utils._rebuild_tensor_v2, torch.XStorage)."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise RuntimeError("never called when writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for kind in KINDS:
        setattr(torch, kind, type(kind, (), {"__module__": "torch"}))
    torch._utils = utils

    class StorageRef:
        def __init__(self, t: Tensor):
            self.t = t

    class Reduced:
        def __init__(self, t: Tensor):
            self.t = t

        def __reduce__(self):
            t = self.t
            return (_rebuild_tensor_v2,
                    (StorageRef(t), t.offset, t.size, t.stride, False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, StorageRef):
                return ("storage", getattr(torch, obj.t.kind), obj.t.key, "cpu", obj.t.numel)
            return None

    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        od = collections.OrderedDict(
            (k, Reduced(v) if isinstance(v, Tensor) else v) for k, v in state.items())
        if metadata:  # torch's state dicts carry it (pickled with BUILD)
            od._metadata = collections.OrderedDict([("", {"version": 1})])
        buf = io.BytesIO()
        Pickler(buf, protocol=protocol).dump(od)
        return buf.getvalue()
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def zip_bytes(members: dict[str, bytes], compress: set[str] = frozenset()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data, zipfile.ZIP_DEFLATED if name in compress else zipfile.ZIP_STORED)
    return buf.getvalue()


def archive_members(state: dict, storages: dict[str, bytes], protocol: int = 2) -> dict[str, bytes]:
    members = {"archive/data.pkl": torch_pickle(state, protocol), "archive/byteorder": b"little"}
    members.update({f"archive/data/{k}": v for k, v in storages.items()})
    members["archive/version"] = b"3\n"
    return members


def write_torch_bin(path, state: dict, storages: dict[str, bytes], protocol: int = 2) -> None:
    """A torch.save zip at `path`: `state` maps names to Tensor views (or other values, to
    craft bad files) and `storages` keys to raw little-endian bytes."""
    Path(path).write_bytes(zip_bytes(archive_members(state, storages, protocol)))


# -- seeds: valid archives and the arrays they must read back as --------------------------------

def expected_view(values: list, offset: int, size, stride) -> list:
    """The view's elements by plain index arithmetic (nested lists), independent of numpy."""
    def rec(base, dims):
        if not dims:
            return values[base]
        (n, s), rest = dims[0], dims[1:]
        return [rec(base + i * s, rest) for i in range(n)]
    return rec(offset, list(zip(size, stride)))


def seeds(rng: random.Random) -> list[tuple[dict, dict, dict]]:
    """(members, expected {name: (dtype, size, nested list)}, description) for each seed."""
    import numpy as np

    def storage(kind: str, n: int):
        raw_dtype, _ = KINDS[kind]
        if kind == "BoolStorage":
            arr = np.array([rng.random() < 0.5 for _ in range(n)], dtype="?")
        elif kind in ("FloatStorage", "HalfStorage", "DoubleStorage"):
            arr = np.array([rng.uniform(-4, 4) for _ in range(n)], dtype=raw_dtype)
        else:
            info = np.iinfo(np.dtype(raw_dtype))
            arr = np.array([rng.randint(int(info.min), int(info.max)) for _ in range(n)], dtype=raw_dtype)
        raw = arr.tobytes()
        if kind == "BFloat16Storage":
            values = (arr.astype(np.uint32) << 16).view(np.float32).tolist()
        else:
            values = arr.tolist()
        return raw, values

    layouts = [
        # (name, kind, storage numel, offset, size, stride)
        [("embeddings.word_embeddings.weight", "FloatStorage", 12, 0, (3, 4), (4, 1))],
        [("w.t", "FloatStorage", 12, 0, (4, 3), (1, 4))],  # transposed
        [("a", "DoubleStorage", 10, 3, (5,), (1,)), ("scalar", "DoubleStorage", 10, 9, (), ())],
        [("position_ids", "LongStorage", 8, 0, (1, 8), (0, 1)),  # expand((1, -1))
         ("wide", "LongStorage", 8, 0, (3, 8), (0, 1))],
        [("empty", "FloatStorage", 4, 4, (0, 4), (4, 1)), ("half", "HalfStorage", 6, 0, (2, 3), (3, 1))],
        [("bf16", "BFloat16Storage", 6, 1, (5,), (1,)), ("bool", "BoolStorage", 5, 0, (5,), (1,))],
        [("i8", "CharStorage", 8, 0, (2, 2, 2), (1, 2, 4)), ("u8", "ByteStorage", 4, 0, (4,), (1,)),
         ("i16", "ShortStorage", 6, 0, (3, 2), (2, 1)), ("i32", "IntStorage", 6, 2, (2, 2), (1, 2))],
        [("empties", "IntStorage", 2, 2, (0, 3, 0), (0, 1, 5)),
         ("step", "FloatStorage", 9, 0, (3, 3), (3, 1)), ("diag", "FloatStorage", 9, 0, (3,), (4,)),
         ("row", "FloatStorage", 9, 3, (1, 3), (9, 1))],
    ]
    out = []
    for layout in layouts:
        state, storages, expected, values_of, keys = {}, {}, {}, {}, {}
        for name, kind, numel, offset, size, stride in layout:
            key = keys.setdefault((kind, numel), str(len(keys)))
            if key not in storages:
                storages[key], values_of[key] = storage(kind, numel)
            state[name] = Tensor(key, kind, numel, offset, size, stride)
            expected[name] = (KINDS[kind][1], size, expected_view(values_of[key], offset, size, stride))
        for protocol in (2, 4):
            out.append((archive_members(state, storages, protocol), expected, f"{len(layout)} tensors, protocol {protocol}"))
    # One storage viewed as two dtypes (torch's Tensor.view(dtype)).
    raw, floats = storage("FloatStorage", 6)
    ints = np.frombuffer(raw, "<i4").tolist()
    state = {"f": Tensor("0", "FloatStorage", 6, 0, (6,), (1,)), "i": Tensor("0", "IntStorage", 6, 1, (2, 2), (1, 2))}
    expected = {"f": ("float32", (6,), floats), "i": ("int32", (2, 2), expected_view(ints, 1, (2, 2), (1, 2)))}
    out.append((archive_members(state, {"0": raw}), expected, "one storage, two dtypes"))
    return out


# -- mutations ----------------------------------------------------------------------------------

INTERESTING = [0, 1, 2, 3, 4, 7, 8, 9, 11, 12, 15, 16, 255, 256, 65535, 2**31 - 1, 2**31, 2**32,
               2**40, 2**47, 2**48, 2**48 + 1, 2**62, 2**63 - 1, 2**63, 2**64, 2**100, -1, -2, -2**31,
               -2**63]
NAMES = [b"0", b"1", b"2", b"7", b"99", b"", b"../0", b"data.pkl", b"0/../0", b"FloatStorage",
         b"HalfStorage", b"BFloat16Storage", b"BoolStorage", b"FooStorage", b"storage", b"cpu",
         b"_rebuild_tensor", b"_rebuild_tensor_v2", b"OrderedDict", b"system", b"os", b"builtins",
         b"eval", b"torch", b"torch._utils", b"collections", b"numpy", b"x" * 300]
OPCODES = [op for op in pickle.__dict__.values() if isinstance(op, bytes) and len(op) == 1]


def encode_int(v: int) -> bytes:
    if 0 <= v < 256:
        return pickle.BININT1 + bytes([v])
    if 0 <= v < 65536:
        return pickle.BININT2 + struct.pack("<H", v)
    if -2**31 <= v < 2**31:
        return pickle.BININT + struct.pack("<i", v)
    raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return pickle.LONG1 + bytes([len(raw)]) + raw


def ops(pkl: bytes) -> list[tuple[str, object, int, int]]:
    """(opcode name, argument, start, end) of every opcode up to where the pickle stops parsing."""
    import pickletools

    found = []
    try:
        prev = None
        for op, arg, pos in pickletools.genops(pkl):
            if prev is not None:
                found.append((prev[0], prev[1], prev[2], pos))
            prev = (op.name, arg, pos)
        if prev is not None:
            found.append((prev[0], prev[1], prev[2], prev[2] + 1))
    except Exception:
        pass
    return found


def mutate_pickle(pkl: bytes, rng: random.Random, pool: list[bytes]) -> tuple[bytes, str]:
    b = bytearray(pkl)
    choice = rng.randrange(14)
    if choice == 0 and b:
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
        return bytes(b), "bitflip"
    if choice == 1 and b:
        b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b), "byte"
    if choice == 2:
        i = rng.randrange(len(b) + 1)
        ins = rng.choice(OPCODES) + bytes(rng.randrange(256) for _ in range(rng.randrange(9)))
        return bytes(b[:i] + ins + b[i:]), "insert-opcode"
    if choice == 3 and b:
        i = rng.randrange(len(b))
        return bytes(b[:i] + b[i + rng.randrange(1, 16):]), "delete"
    if choice == 4 and b:
        i = rng.randrange(len(b))
        j = min(len(b), i + rng.randrange(1, 32))
        return bytes(b[:j] + b[i:j] + b[j:]), "duplicate"
    found = ops(pkl)
    ints = [o for o in found if o[0] in ("BININT1", "BININT2", "BININT", "LONG1")]
    if choice in (5, 6, 7) and ints:  # sizes, strides, offsets and everything else numeric
        name, arg, s, e = rng.choice(ints)
        v = rng.choice(INTERESTING) if choice != 7 else arg + rng.choice([-2, -1, 1, 2])
        return pkl[:s] + encode_int(v) + pkl[e:], f"int {arg}->{v}"
    tuples = [o for o in found if o[0] in ("TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_TUPLE")]
    if choice == 8 and tuples:  # one more or one fewer dimension, or a non-int in a tuple
        name, arg, s, e = rng.choice(tuples)
        extra = rng.choice([encode_int(rng.choice(INTERESTING)), pickle.NEWTRUE, pickle.NONE,
                            pickle.BINFLOAT + struct.pack(">d", 2.0), b"\x8c\x011"])
        new = {"EMPTY_TUPLE": extra + pickle.TUPLE1, "TUPLE1": extra + pickle.TUPLE2,
               "TUPLE2": rng.choice([pickle.TUPLE1, extra + pickle.TUPLE3]),
               "TUPLE3": rng.choice([pickle.TUPLE2, pickle.TUPLE])}[name]
        return pkl[:s] + new + pkl[e:], f"tuple {name}"
    strings = [o for o in found if o[0] in ("BINUNICODE", "SHORT_BINUNICODE", "GLOBAL")]
    if choice == 9 and strings:
        name, arg, s, e = rng.choice(strings)
        if name == "GLOBAL":
            module, attr = rng.choice(NAMES), rng.choice(NAMES)
            new = pickle.GLOBAL + module + b"\n" + attr + b"\n"
        else:
            t = rng.choice(NAMES)
            new = pickle.BINUNICODE + struct.pack("<I", len(t)) + t
        return pkl[:s] + new + pkl[e:], f"name {arg!r}"
    if choice == 10:  # deep nesting: a C-stack overflow if hashed or recursed into
        depth = rng.choice([100, 10_000, 200_000])
        nest = rng.choice([pickle.NONE + pickle.TUPLE1 * depth,  # nested tuples
                           pickle.MARK * depth + pickle.EMPTY_LIST + pickle.LIST * depth,  # lists
                           pickle.MARK * depth + pickle.EMPTY_TUPLE])  # marks left open
        key_op = rng.choice([pickle.BININT1 + b"\x01" + pickle.SETITEM, pickle.NONE + pickle.SETITEM,
                             b"", pickle.TUPLE1 + pickle.EMPTY_DICT + pickle.MARK])
        i = rng.randrange(len(b) + 1)
        return bytes(b[:i]) + pickle.EMPTY_DICT + nest + key_op + bytes(b[i:]), f"nest {depth}"
    if choice == 11:  # huge memo indices and declared lengths
        i = rng.randrange(len(b) + 1)
        ins = rng.choice([
            pickle.LONG_BINPUT + struct.pack("<I", rng.choice([2**31, 2**32 - 1, 10**9])),
            pickle.LONG_BINGET + struct.pack("<I", 2**32 - 1),
            pickle.BINUNICODE + struct.pack("<I", 2**31) + b"abc",
            pickle.BINBYTES + struct.pack("<I", 2**32 - 1) + b"abc",
            b"\x8e" + struct.pack("<Q", 2**62) + b"abc",  # BINBYTES8
            pickle.LONG4 + struct.pack("<i", 2**30) + b"\x01",
            pickle.LONG + b"9" * 5000 + b"L\n",
            b"\x95" + struct.pack("<Q", 2**60),  # FRAME
            b"\x96" + struct.pack("<Q", 2**40),  # BYTEARRAY8: allocated before it is read
        ])
        return bytes(b[:i]) + ins + bytes(b[i:]), "huge"
    if choice == 12 and pool:  # splice from another seed
        other = rng.choice(pool)
        i, j = rng.randrange(len(b) + 1), rng.randrange(len(other))
        return bytes(b[:i]) + other[j:j + rng.randrange(1, 64)] + bytes(b[i:]), "splice"
    i = rng.randrange(len(b) + 1)
    return bytes(b[:i]), "truncate"


def patch_sizes(data: bytes, rng: random.Random) -> bytes:
    """Declares another uncompressed size for one member in the central directory."""
    b = bytearray(data)
    at = [i for i in range(len(b) - 4) if b[i:i + 4] == b"PK\x01\x02"]
    if not at:
        return data
    i = rng.choice(at)
    b[i + 24:i + 28] = struct.pack("<I", rng.choice([0, 1, 2**31, 2**32 - 1, 3 << 30]))
    return bytes(b)


def mutate_zip(members: dict[str, bytes], rng: random.Random) -> tuple[bytes, str]:
    members = dict(members)
    names = list(members)
    data_names = [n for n in names if "/data/" in n]
    choice = rng.randrange(10)
    if choice == 0 and data_names:
        n = rng.choice(data_names)
        members[n] = members[n][: rng.randrange(len(members[n]) + 1)]
        return zip_bytes(members), "short storage"
    if choice == 1 and data_names:
        n = rng.choice(data_names)
        members[n] += bytes(rng.randrange(1, 9))
        return zip_bytes(members), "long storage"
    if choice == 2:
        del members[rng.choice(names)]
        return zip_bytes(members), "missing member"
    if choice == 3:
        n = rng.choice(names)
        members[n.replace("archive/", rng.choice(["other/", "", "archive/x/", "../"]), 1)] = members.pop(n)
        return zip_bytes(members), "renamed member"
    if choice == 4:
        return zip_bytes(members, compress=set(rng.sample(names, rng.randrange(1, len(names) + 1)))), "deflated"
    if choice == 5:
        members["archive/byteorder"] = rng.choice([b"big", b"", b"x" * 100])
        return zip_bytes(members), "byteorder"
    if choice == 6:
        return patch_sizes(zip_bytes(members, compress={rng.choice(names)}), rng), "declared size"
    raw = bytearray(zip_bytes(members))
    if choice == 7:
        for _ in range(rng.randrange(1, 8)):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        return bytes(raw), "zip bitflip"
    if choice == 8:  # the general-purpose flag (encryption) or the method of one entry
        at = [i for i in range(len(raw) - 4) if raw[i:i + 4] in (b"PK\x01\x02", b"PK\x03\x04")]
        i = rng.choice(at)
        off = 8 if raw[i + 2] == 1 else 6
        raw[i + off:i + off + 2] = struct.pack("<H", rng.choice([1, 99, 12, 14, 0x41]))
        return bytes(raw), "flag/method"
    return bytes(raw[: rng.randrange(len(raw))]), "truncated zip"


# -- running cases --------------------------------------------------------------------------------

def load_exporter():
    spec = importlib.util.spec_from_file_location("export_onnx", HERE / "export_onnx.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def check_result(ex, archive, tensors, path: Path) -> str | None:
    """None when what the reader returned is sound, else what is wrong."""
    import numpy as np

    allowed = {np.dtype(d) for _, d in KINDS.values()}
    if type(tensors) is not dict:
        return f"returned a {type(tensors).__name__}"
    for k, v in tensors.items():
        if type(k) is not str or type(v) is not np.ndarray:
            return f"entry {k!r}: {type(v).__name__}"
        if not (v.flags.c_contiguous and v.flags.owndata) or v.dtype not in allowed or v.ndim > ex.TorchArchive.MAX_DIMS:
            return f"{k}: not a plain contiguous copy ({v.dtype}, {v.flags})"
    for key, numel, offset, size, stride in archive.views:
        if any(type(x) is not int or x < 0 for x in (offset, *size, *stride)):
            return f"view of {key}: {offset} {size} {stride}"
        count = 1
        for n in size:
            count *= n
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if count and last >= numel or not count and offset > numel:
            return f"view of {key} reaches {last} of {numel}"
    return None


def run_case(ex, path: Path, data: bytes) -> tuple[str, str]:
    """('read' | 'error' | 'crash', detail)."""
    path.write_bytes(data)
    try:
        archive = ex.TorchArchive(path)
        tensors = archive.tensors()
    except ex.ExportError as e:
        msg = str(e)
        if "\n" in msg or str(path) not in msg:
            return "crash", f"unclear error: {msg[:300]}"
        return "error", msg
    except BaseException as e:  # noqa: BLE001 - every other outcome is a finding
        if isinstance(e, KeyboardInterrupt):
            raise
        return "crash", "".join(traceback.format_exception(e)[-3:])[-1500:]
    problem = check_result(ex, archive, tensors, path)
    return ("crash", problem) if problem else ("read", "")


def check_seeds(ex, work: Path, all_seeds) -> list[str]:
    import numpy as np

    problems = []
    for members, expected, what in all_seeds:
        path = work / "seed.bin"
        path.write_bytes(zip_bytes(members))
        try:
            got = ex.TorchArchive(path).tensors()
        except Exception as e:  # noqa: BLE001
            problems.append(f"seed ({what}) not read: {type(e).__name__}: {e}")
            continue
        for name, (dtype, size, values) in expected.items():
            want = np.array(values, dtype=dtype).reshape(size)
            g = got.get(name)
            if g is None or g.dtype != want.dtype or g.shape != want.shape or not np.array_equal(g, want):
                problems.append(f"seed ({what}): {name} reads back wrong: {g!r} != {want!r}")
    return problems


def child(work: Path) -> None:
    """The fuzz loop; writes counts to work/progress.json as it goes (the parent reads them)."""
    import resource

    limit = int(float(os.environ.get("FUZZ_MEM_GB", "4")) * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    ex = load_exporter()
    rng = random.Random(int(os.environ.get("FUZZ_SEED", "20250")))
    all_seeds = seeds(rng)
    counts = {"cases": 0, "read": 0, "error": 0, "crash": 0, "slowest": 0.0, "errors": {}}
    problems = check_seeds(ex, work, all_seeds)
    counts["crash"] += len(problems)
    for p in problems:
        print(f"fuzz torch-bin: SEED {p}", file=sys.stderr)
    seconds = float(os.environ.get("FUZZ_SECONDS", "10"))
    max_cases = int(os.environ.get("FUZZ_CASES", "0")) or None
    pool = [m["archive/data.pkl"] for m, _, _ in all_seeds]
    start = time.monotonic()
    path = work / "case.bin"
    progress = work / "progress.json"
    while time.monotonic() - start < seconds and (max_cases is None or counts["cases"] < max_cases):
        members, _, _ = rng.choice(all_seeds)
        members = dict(members)
        how = []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            if rng.random() < 0.75:
                members["archive/data.pkl"], what = mutate_pickle(members["archive/data.pkl"], rng, pool)
                how.append(what)
        if rng.random() < 0.25 or not how:
            data, what = mutate_zip(members, rng)
            how.append(what)
        else:
            data = zip_bytes(members)
        (work / "case.txt").write_text(f"case {counts['cases']}: {', '.join(how)}\n")
        t0 = time.monotonic()
        outcome, detail = run_case(ex, path, data)
        counts["slowest"] = max(counts["slowest"], time.monotonic() - t0)
        counts["cases"] += 1
        counts[outcome] += 1
        if outcome == "error":
            kind = detail.split(": ", 1)[-1][:40]
            counts["errors"][kind] = counts["errors"].get(kind, 0) + 1
        if outcome == "crash":
            save_crash(work, data, f"{', '.join(how)}\n{detail}")
            print(f"fuzz torch-bin: CRASH case {counts['cases'] - 1} ({', '.join(how)}): {detail}", file=sys.stderr)
        if counts["cases"] % 50 == 0:
            progress.write_text(json.dumps(counts))
    counts["seconds"] = time.monotonic() - start
    progress.write_text(json.dumps(counts))


def save_crash(work: Path, data: bytes, note: str) -> None:
    out = Path(os.environ.get("FUZZ_CRASH_DIR", work / "crashes"))
    out.mkdir(parents=True, exist_ok=True)
    n = len(list(out.glob("crash-*.bin")))
    (out / f"crash-{n}.bin").write_bytes(data)
    (out / f"crash-{n}.txt").write_text(note)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]))
        return 0
    with tempfile.TemporaryDirectory(prefix="fuzz-torch-bin-") as tmp:
        work = Path(tmp)
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        env.setdefault("FUZZ_CRASH_DIR", str(Path(tempfile.gettempdir()) / "fuzz-torch-bin-crashes"))
        t0 = time.monotonic()
        rc = subprocess.run([sys.executable, __file__, "--child", str(work)], env=env).returncode
        wall = time.monotonic() - t0
        progress = work / "progress.json"
        counts = json.loads(progress.read_text()) if progress.exists() else {"cases": 0, "read": 0, "error": 0, "crash": 0}
        if rc != 0:  # a segfault or an abort: the case being run is the culprit
            counts["crash"] += 1
            case = work / "case.txt"
            note = case.read_text() if case.exists() else "before the first case"
            if (work / "case.bin").exists():
                save_crash(work, (work / "case.bin").read_bytes(), note)
            print(f"fuzz torch-bin: the child exited with {rc} during {note.strip()} "
                  f"(saved in {env['FUZZ_CRASH_DIR']}); counts are from its last report", file=sys.stderr)
        if os.environ.get("FUZZ_VERBOSE") == "1":
            for kind, n in sorted(counts.get("errors", {}).items(), key=lambda kv: -kv[1])[:25]:
                print(f"  {n:7d}  {kind}")
        seconds = counts.get("seconds", wall)
        print(f"fuzz torch-bin: {counts['cases']} cases in {seconds:.0f} s: {counts['read']} read, "
              f"{counts['error']} clear errors, {counts['crash']} crashes "
              f"(slowest case {counts.get('slowest', 0):.2f} s; child exit {rc})")
        return 1 if counts["crash"] or rc else 0


if __name__ == "__main__":
    sys.exit(main())
