#!/usr/bin/env bash
# Create .venv and install mapseg with TensorFlow, ONNX Runtime and the ONNX exporter, Dask and the dev tools, at
# the exact versions CI tested (requirements/lock.txt, refreshed with
# `bash scripts/lock.sh --upgrade`). On another platform or Python than the
# lock's (Linux x86_64, CPython 3.11) it resolves pyproject.toml's ranges instead.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
constraints=()
if .venv/bin/python -c 'import platform, sys; sys.exit(not (sys.version_info[:2] == (3, 11) and platform.system() == "Linux" and platform.machine() == "x86_64"))'; then
    constraints=(--constraint requirements/lock.txt)
else
    echo "setup.sh: requirements/lock.txt is for CPython 3.11 on Linux x86_64; resolving pyproject.toml's ranges instead" >&2
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "${constraints[@]}" -e ".[tensorflow,onnx,export,distributed,dev]"
