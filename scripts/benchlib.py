"""What the Python bench scripts (scripts/bench_*.py) share: running frostline and reading its
--json summary, the command-line arguments they have in common, and writing the Markdown report,
so that each script holds only its own benchmark. A script imports it by its own folder:

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import benchlib
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

# The arguments several scripts take, defined once; a script names the ones it takes.
ARGS = {
    "frostline": {"required": True},
    "model": {"required": True},
    "st-model": {"required": True},
    "shared": {"required": True},
    "work": {"required": True},
    "texts": {"type": int, "default": 6000},
    "reps": {"type": int, "default": 3},
    "threads": {"type": int, "default": 2},
    "out": {"required": True},
}


def common_args(ap: argparse.ArgumentParser, *names: str, **own: dict) -> None:
    """Adds the shared arguments `names` (from ARGS) in the order given, which is the order --help
    lists them in. `own` replaces a definition where a script differs, keyed by the argument's
    dest: out={"default": "bench-results/x.md"}."""
    for name in names:
        ap.add_argument(f"--{name}", **own.get(name.replace("-", "_"), ARGS[name]))


def scratch(prefix: str) -> Path:
    """A temp folder for one benchmark's work (models, caches, corpora: gigabytes), removed when
    the script exits, whether it finished or failed."""
    import atexit
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    return work


def sh(cmd: list) -> subprocess.CompletedProcess:
    """Runs a command (Paths and numbers in it as text) and returns its captured output. A bench
    cannot go on past a failed step, so a failure ends the script with the command and its output."""
    cmd = [str(c) for c in cmd]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p


def run_frostline(binary: str, command: str, *args) -> tuple[dict, float]:
    """Runs `binary command --json *args`; returns the JSON summary it prints and the wall seconds
    of the whole process."""
    t0 = time.perf_counter()
    p = sh([binary, command, "--json", *args])
    wall = time.perf_counter() - t0
    return json.loads(p.stdout), wall


def cpu_info() -> tuple[str, str]:
    """The CPU's model and its vector / matrix feature flags, for every report's head."""
    text = Path("/proc/cpuinfo").read_text()
    first = text.split("\n\n")[0]
    field = {k.strip(): v.strip() for k, _, v in (l.partition(":") for l in first.splitlines())}
    flags = sorted(f for f in field.get("flags", "").split() if f.startswith(("avx512", "amx", "avx2", "avx_vnni", "fma")))
    model = f"{field.get('model name', '?')} (family {field.get('cpu family', '?')}, model {field.get('model', '?')})"
    return model, " ".join(flags)


def read_labelled(path: Path) -> tuple[list[str], list[str]]:
    """The text and label columns of a labelled CSV file."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def write_labelled(path: Path, texts, labels) -> None:
    """A labelled CSV file (text, label) of the given rows."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "label"])
        w.writerows(zip(texts, labels))


def sentence_sets(shared: Path, work: Path, rng, goemotions_train: int) -> dict[str, tuple[Path, Path, Path]]:
    """(train, dev, test) files of the frost-line benches' sentence sets, written into `work`:
    Banking77 with a seeded 10 % of train carved as dev (test full); GoEmotions-Ekman with a
    seeded random `goemotions_train` rows of train (time), dev and test full."""
    texts, labels = read_labelled(shared / "banking77/train.csv")
    idx = list(range(len(texts)))
    rng.shuffle(idx)
    cut = len(idx) // 10
    dev_i, tr_i = sorted(idx[:cut]), sorted(idx[cut:])
    write_labelled(work / "b77-train.csv", [texts[i] for i in tr_i], [labels[i] for i in tr_i])
    write_labelled(work / "b77-dev.csv", [texts[i] for i in dev_i], [labels[i] for i in dev_i])
    texts, labels = read_labelled(shared / "goemotions_ekman/train.csv")
    idx = sorted(rng.sample(range(len(texts)), min(goemotions_train, len(texts))))
    write_labelled(work / "ge-train.csv", [texts[i] for i in idx], [labels[i] for i in idx])
    return {
        "Banking77": (work / "b77-train.csv", work / "b77-dev.csv", shared / "banking77/test.csv"),
        "GoEmotions-Ekman": (work / "ge-train.csv", shared / "goemotions_ekman/dev.csv", shared / "goemotions_ekman/test.csv"),
    }


def write_report(out: str | Path, lines: list[str]) -> None:
    """Writes the Markdown report, creating its folder, and prints it."""
    text = "\n".join(lines)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text + "\n", encoding="utf-8")
    print(text)


def engine_gflops(tokens: int, threads: int | None = None) -> list[dict]:
    """GFLOP/s of frostline's product kernels on BERT-layer shapes (`cargo bench --bench engine`):
    one row per (shape, product, kernel). Its stderr (CPU, flags, threads, any kernel not run) is
    passed on."""
    import csv
    import io
    import os
    env = {**os.environ, **({"MATMUL_NUM_THREADS": str(threads)} if threads else {})}
    out = subprocess.run(["cargo", "bench", "--quiet", "--bench", "engine", "--", str(tokens)],
                         env=env, capture_output=True, text=True, check=True)
    print(out.stderr.strip(), file=sys.stderr)
    return list(csv.DictReader(io.StringIO(out.stdout)))


def chip_peak(threads: int) -> dict:
    """The chip's own ceilings with `threads` threads (`cargo bench --bench chip_peak`):
    `fp32_fma_gflops` and, where the CPU has AVX512-VNNI, `int8_vnni_gmacs` — FMAs and
    `vpdpbusd` in registers, no memory traffic; what no kernel can beat."""
    out = subprocess.run(["cargo", "bench", "--quiet", "--bench", "chip_peak", "--", str(threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def own_products(threads: int) -> dict:
    """frostline's own product kernels outside ONNX Runtime with `threads` threads (`cargo bench
    --bench products`: the encoder's four weight shapes, six layers' weights cycled, 1,024 rows
    split between the threads, a wait after each product as a graph's nodes have): `fp32_gflops`
    where the fp32 kernel runs, `int8_gmacs` (multiply-adds) and `int8_kernel` where an int8
    one does. What a graph's products could reach with these kernels."""
    out = subprocess.run(["cargo", "bench", "--quiet", "--bench", "products", "--", str(threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ceilings(threads: int, before: dict | None = None) -> dict:
    """The chip's ceilings (`chip_peak`) and frostline's own kernels outside ONNX Runtime
    (`own_products`), measured now, in one dict. With `before` (this call's result from before a
    benchmark's reps), each rate is the higher of the two: the machine's speed drifts within a
    run, and a ceiling is what the chip or kernel did at its best in it."""
    now = {**chip_peak(threads), **own_products(threads)}
    if before is None:
        return now
    return {k: max(v, before[k]) if isinstance(v, float) and k in before else v for k, v in now.items()}


def int8_on_vnni(binary: str, folder: str | Path) -> bool:
    """Whether frostline runs the int8 folder's products on AVX512-VNNI, as `frostline doctor`
    says: only then does the chip's `vpdpbusd` ceiling bound them (AMX tiles have their own)."""
    doctor, _ = run_frostline(binary, "doctor", "--model", folder)
    return "VNNI" in (doctor["graph"].get("int8_kernel") or "")


def attention_flops(model_dir: str | Path, lengths: list[int]) -> float:
    """FLOPs of the attention's own products (scores Q·Kᵀ and context P·V, 2·L²·H multiply-adds
    per layer for a text of L tokens) over texts of `lengths` tokens, padding not counted."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    h, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    return float(sum(layers * 4 * n * n * h for n in lengths))


def ort_matmul_peak(threads: int, reps: int = 10) -> tuple[float, str]:
    """The fp32 matmul peak of ONNX Runtime (MLAS) on this machine with `threads` threads: the
    best GFLOP/s over the encoder's own product shapes at 1,024 and 4,096 tokens and a square
    one, best of `reps` runs of 5 products each. Returns GFLOP/s and the shape that reached it."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    best, where = 0.0, ""
    shapes = [(m, k, n) for m in (1024, 4096) for k, n in ((384, 1152), (384, 384), (384, 1536), (1536, 384))]
    for m, k, n in shapes + [(2048, 1024, 1024)]:
        g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "peak",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, [k, n])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, n])])
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feed = {"a": rng.standard_normal((m, k), dtype=np.float32), "b": rng.standard_normal((k, n), dtype=np.float32)}
        sess.run(None, feed)
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(5):
                sess.run(None, feed)
            gflops = 5 * 2 * m * k * n / (time.perf_counter() - t0) / 1e9
            if gflops > best:
                best, where = gflops, f"{m}×{k}·{k}×{n}"
    return best, where


def ort_int8_matmul_peak(threads: int, reps: int = 10) -> tuple[float, str]:
    """ONNX Runtime's (MLAS's) best int8 product rate on this machine with `threads` threads, in
    G multiply-adds/s: `MatMulIntegerToFloat` (u8 activations with a zero point, constant s8
    weights with a scale per column, as the per-token graph runs it) on the encoder's product
    shapes at 1,024 and 4,096 rows, best of `reps` runs of 5 products each."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    best, where = 0.0, ""
    rng = np.random.default_rng(0)
    for m in (1024, 4096):
        for k, n in ((384, 1152), (384, 384), (384, 1536), (1536, 384)):
            inits = [numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "b"),
                     numpy_helper.from_array(np.array(0.01, np.float32), "a_scale"),
                     numpy_helper.from_array(rng.random(n, dtype=np.float32) * 0.01, "b_scale"),
                     numpy_helper.from_array(np.array(128, np.uint8), "a_zp")]
            node = helper.make_node("MatMulIntegerToFloat", ["a", "b", "a_scale", "b_scale", "a_zp"], ["c"],
                                    domain="com.microsoft")
            g = helper.make_graph([node], "int8-peak", [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])],
                                  [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, n])], inits)
            model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
            model.ir_version = 8
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            feed = {"a": rng.integers(0, 256, (m, k), dtype=np.uint8)}
            sess.run(None, feed)
            for _ in range(reps):
                t0 = time.perf_counter()
                for _ in range(5):
                    sess.run(None, feed)
                rate = 5 * m * k * n / (time.perf_counter() - t0) / 1e9
                if rate > best:
                    best, where = rate, f"{m}×{k}·{k}×{n}"
    return best, where


def model_flops_per_token(model_dir: str | Path) -> float:
    """Multiply-add FLOPs per token of a BERT encoder's weight products (Q, K, V, O, FFN in and
    out: 2·(4·H² + 2·H·F) per layer), the attention score products not counted."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    h, f, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    return layers * 2 * (4 * h * h + 2 * h * f)


def long_corpus(shared: Path, tokenizer_file: str | Path, n: int, low: int = 200, high: int = 256) -> list[str]:
    """`n` long texts of `low`..`high` tokens (the model's own tokenizer, special tokens
    counted), each made by joining consecutive train texts of one ../shared/data set, the sets
    taken in turn (Banking77, SST-2, GoEmotions-Ekman): documents where attention is a larger
    share of the work than in the short test texts."""
    import csv
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.no_truncation()
    tok.no_padding()
    sources = []
    for rel in ["banking77/train.csv", "sst2/train.csv", "goemotions_ekman/train.csv"]:
        with open(shared / "data" / rel, encoding="utf-8", newline="") as f:
            sources.append(iter([r["text"].replace("\n", " ") for r in csv.DictReader(f)]))
    out: list[str] = []
    while len(out) < n:
        parts: list[str] = []
        for text in sources[len(out) % len(sources)]:
            trial = " ".join(parts + [text])
            length = len(tok.encode(trial).ids)
            if length > high:
                if parts and len(tok.encode(" ".join(parts)).ids) >= low:
                    break
                parts = []  # the next text overshoots: start this document again
                continue
            parts.append(text)
            if length >= low:
                break
        else:
            sys.exit(f"../shared/data ran out of texts after {len(out)} long documents")
        out.append(" ".join(parts))
    return out


def sorted_batches(enc: list, size: int = 32):
    """(row indices, input ids, attention mask) of length-sorted batches of `size` encodings,
    each padded to its longest."""
    import numpy as np

    order = sorted(range(len(enc)), key=lambda i: len(enc[i].ids))
    for s in range(0, len(order), size):
        idx = order[s:s + size]
        width = max(len(enc[i].ids) for i in idx)
        ids = np.zeros((len(idx), width), np.int64)
        mask = np.zeros_like(ids)
        for j, i in enumerate(idx):
            ids[j, :len(enc[i].ids)] = enc[i].ids
            mask[j, :len(enc[i].ids)] = 1
        yield idx, ids, mask


def python_ort_sorted(graph: str | Path, tokenizer_file: str | Path, texts: list[str], threads: int,
                      state: dict, key: str) -> dict:
    """Python + ONNX Runtime the careful way: texts sorted by length, batches of 32 padded to
    their longest, mean pooling and L2 normalisation in numpy. The session is made once per
    `key` (outside the timing)."""
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    if key not in state:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        tok = Tokenizer.from_file(str(tokenizer_file))
        tok.enable_truncation(256)
        tok.no_padding()
        state[key] = (ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"]), tok)
    sess, tok = state[key]
    t0 = time.perf_counter()
    enc = tok.encode_batch(texts)
    out = np.zeros((len(texts), 0), np.float32)
    run_s = 0.0
    for idx, ids, mask in sorted_batches(enc):
        t1 = time.perf_counter()
        h = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        run_s += time.perf_counter() - t1
        m = mask[:, :, None].astype(np.float32)
        v = (h * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
        if out.shape[1] == 0:
            out = np.zeros((len(texts), v.shape[1]), np.float32)
        out[idx] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return {"seconds": time.perf_counter() - t0, "session_run": run_s, "vectors": out}
