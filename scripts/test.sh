#!/usr/bin/env bash
# Set up and run the whole test suite (slow and real-data tests included;
# real-data tests skip with a reason when ../shared is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
set +e
.venv/bin/python -m pytest -ra "$@"
status=$?
set -e
# pytest exits 5 when it collected no test: that is a failure here, not a pass.
exit "$status"
