#!/usr/bin/env bash
# Prepare a fresh machine for vialguard: the Python environment (pinned), the
# Triton server environment, and a redis-server binary. Idempotent: a stamp holding
# the hash of the lock files skips work that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
VENV=.venv
STAMP=$VENV/.vialguard-stamp
want=$(cat requirements/main.txt pyproject.toml | sha256sum | cut -d' ' -f1)

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "[setup] creating $VENV from requirements/main.txt"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r requirements/main.txt
  "$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
  echo "$want" > "$STAMP"
fi

if ! command -v redis-server >/dev/null; then
  echo "[setup] installing redis-server (Debian package)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server >/dev/null; fi
fi

# Debian's chromium + chromium-driver: the HMI's browser test drives a real headless
# Chromium (tests/e2e); the driver matches the browser because both come from one release.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "[setup] installing chromium and chromium-driver (Debian packages)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium chromium-driver >/dev/null; fi
fi

if [ -x scripts/setup_triton.sh ]; then
  scripts/setup_triton.sh
fi
echo "[setup] ready"
