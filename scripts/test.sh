#!/usr/bin/env bash
# The test command: set-up (idempotent, quick when done), then every test in release mode
# (one build profile for the binary, the tests and clippy). setup_compat.sh: the old pyarrow
# the Parquet interop test reads with; setup_browser.sh: the Chromium the report.html test renders
# in.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_compat.sh
bash scripts/setup_browser.sh
cargo test --release "$@"
