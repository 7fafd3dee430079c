#!/usr/bin/env bash
# The browser tests/browser.rs renders report.html in: Debian's Chromium, headless. Idempotent
# (quick when installed); needs root (or sudo) for apt-get the first time.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "setup_browser: chromium is missing and this user cannot apt-get install it (no root, no sudo); install Debian's chromium package" >&2; exit 1; }
  sudo=sudo
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null
echo "setup_browser: chromium $(chromium --version 2>/dev/null | awk '{print $2}')"
