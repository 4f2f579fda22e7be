#!/usr/bin/env bash
# Prepare .venv-triton: the local Triton server (from PyPI's nvidia-pytriton wheel,
# installed with --no-deps: only its tritonserver binary and Python backend are
# used) and the Python environment its Python backend runs model.py in
# (requirements/triton-backend.txt: numpy < 2, onnxruntime).
#
# The backend stub embeds the SYSTEM libpython3.X, so the venv is made from the
# system /usr/bin/python3 (same stdlib as that libpython), not from pyenv or
# another build. Idempotent: a stamp holding the hash of the inputs skips work
# already done. Debian 12 packages it needs are installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTRITON_VERSION=0.7.0
SYSTEM_PYTHON=${TRITON_SYSTEM_PYTHON:-/usr/bin/python3}   # Debian 12: 3.11; the wheel has stubs for 3.8-3.13
VENV=.venv-triton
STAMP=$VENV/.vialguard-stamp

apt_install() {
  echo "[setup_triton] installing Debian packages: $*"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "$@" >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq "$@" >/dev/null; fi
}

[ -x "$SYSTEM_PYTHON" ] || apt_install python3 python3-venv
py=$("$SYSTEM_PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
missing=()
# the stub links the shared libpython of this exact Python; venv needs ensurepip
ls /usr/lib/*-linux-gnu/libpython"$py".so.1* >/dev/null 2>&1 || missing+=("libpython$py")
"$SYSTEM_PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=("python$py-venv")
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
want=$( { cat requirements/triton-backend.txt; echo "nvidia-pytriton==$PYTRITON_VERSION python$py"; } | sha256sum | cut -d' ' -f1)

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "[setup_triton] creating $VENV (numpy < 2, onnxruntime, tritonserver $PYTRITON_VERSION)"
  rm -rf "$VENV"
  "$SYSTEM_PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r requirements/triton-backend.txt
  "$VENV/bin/python" -m pip install --quiet --no-deps "nvidia-pytriton==$PYTRITON_VERSION"
  # The Python backend looks for its stub beside libtriton_python.so; the wheel
  # keeps one stub per Python version elsewhere, as pytriton copies it at run time.
  triton_root=$("$VENV/bin/python" -c 'import pathlib, sysconfig; print(pathlib.Path(sysconfig.get_paths()["purelib"]) / "pytriton" / "tritonserver")')
  cp "$triton_root/python_backend_stubs/$py/triton_python_backend_stub" "$triton_root/backends/python/"
  "$VENV/bin/python" -c 'import numpy, onnxruntime; assert numpy.__version__ < "2", numpy.__version__'
  echo "$want" > "$STAMP"
fi

triton_root=$("$VENV/bin/python" -c 'import pathlib, sysconfig; print(pathlib.Path(sysconfig.get_paths()["purelib"]) / "pytriton" / "tritonserver")')
echo "[setup_triton] tritonserver: $triton_root/bin/tritonserver (backends: $triton_root/backends, python env: $VENV)"
