#!/usr/bin/env python3
"""Reads frostline's report files with Python polars and pandas and prints their schemas, to show
that the documented columns and types come through. Usage: read_reports.py DIR [DIR...]
(an `eval` folder and/or a `compare` folder). Run with the benchmark venv:
    ~/.cache/frostline/bench-venv/bin/python scripts/read_reports.py ckpt/eval-test compare-report
"""
import sys
from pathlib import Path

import pandas as pd
import polars as pl

for d in map(Path, sys.argv[1:]):
    for f in sorted(d.glob("*.parquet")):
        df = pl.read_parquet(f)
        pdf = pd.read_parquet(f)
        csv = pl.read_csv(f.with_suffix(".csv"))
        assert csv.columns == df.columns and csv.height == df.height, f
        print(f"{f}: {df.height} rows")
        print("  polars:", ", ".join(f"{c}: {t}" for c, t in df.schema.items()))
        print("  pandas:", ", ".join(f"{c}: {t}" for c, t in pdf.dtypes.items()))
