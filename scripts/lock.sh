#!/usr/bin/env bash
# Refresh requirements/lock.txt: the exact versions CI tests and setup.sh
# installs (Linux x86_64, CPython 3.11), resolved from pyproject.toml's ranges.
#   bash scripts/lock.sh                           # keep pins, add what pyproject.toml added
#   bash scripts/lock.sh --upgrade                 # move everything to today's newest releases
#   bash scripts/lock.sh --upgrade-package keras   # move one package only
# Then run `bash scripts/test.sh` and commit the lock with the change that needed it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet uv
fi
uv pip compile pyproject.toml --extra tensorflow --extra onnx --extra export --extra distributed --extra dev \
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --custom-compile-command "bash scripts/lock.sh" -o requirements/lock.txt "$@"
