"""What the Python bench scripts (scripts/bench_*.py) share: running frostline and reading its
--json summary, the command-line arguments they have in common, and writing the Markdown report,
so that each script holds only its own benchmark. A script imports it by its own folder:

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import benchlib
"""

from __future__ import annotations

import argparse
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
    flags = sorted(f for f in field.get("flags", "").split() if f.startswith(("avx512", "amx", "avx2", "fma")))
    model = f"{field.get('model name', '?')} (family {field.get('cpu family', '?')}, model {field.get('model', '?')})"
    return model, " ".join(flags)


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
