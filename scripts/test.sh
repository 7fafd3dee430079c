#!/usr/bin/env bash
# The test command: set-up (idempotent, quick when done), then every test in release mode
# (one build profile for the binary, the tests and clippy).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --release "$@"
