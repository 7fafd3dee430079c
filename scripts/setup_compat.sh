#!/usr/bin/env bash
# Idempotent: a venv with the oldest readers frostline's Parquet files promise to work with
# (pyarrow 14, pandas 2.1), and a current polars (a reader of dataset folders), used by
# tests/interop.rs. Override the location with FROSTLINE_COMPAT_VENV.
set -euo pipefail
venv=${FROSTLINE_COMPAT_VENV:-$HOME/.cache/frostline/compat-venv}
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import pyarrow, pandas; assert pyarrow.__version__ == "14.0.2" and pandas.__version__ == "2.1.4"' 2>/dev/null; then
  echo "setup: installing pyarrow 14.0.2, pandas 2.1.4 into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    'pyarrow==14.0.2' 'pandas==2.1.4' 'numpy==1.26.4'
fi
if ! "$venv/bin/python" -c 'import polars' 2>/dev/null; then
  echo "setup: installing polars into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'polars>=1.0'
fi
echo "setup: ok (old-reader venv $venv)"
