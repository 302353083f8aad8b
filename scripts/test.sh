#!/usr/bin/env bash
# Set up and run the whole test suite (slow and real-data tests included;
# real-data tests skip with a reason when ../shared is absent).
#
# Two pytest runs: the project's environment (.venv) runs tests/ except
# tests/qgis; Debian's QGIS Python (/usr/bin/python3, which cannot import
# TensorFlow) runs tests/qgis against real QGIS, headless, driving .venv's
# mapseg as the engine. Options (-q, -m "not slow", -k ...) go to both runs;
# paths go to the run they belong to. MAPSEG_QGIS_TESTS=0 skips the QGIS run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2

QGIS_PYTHON=${QGIS_PYTHON:-/usr/bin/python3}
QGIS_PACKAGES=(qgis python3-qgis qgis-providers python3-pytest python3-venv)
run_qgis=${MAPSEG_QGIS_TESTS:-1}

options=() venv_paths=() qgis_paths=()
for arg in "$@"; do
    case "$arg" in
        tests/qgis*) qgis_paths+=("$arg") ;;
        -*) options+=("$arg") ;;
        *) if [ -e "${arg%%::*}" ]; then venv_paths+=("$arg"); else options+=("$arg"); fi ;;
    esac
done
if [ $(( ${#venv_paths[@]} + ${#qgis_paths[@]} )) -gt 0 ] && [ ${#qgis_paths[@]} -eq 0 ]; then
    run_qgis=0
fi

if [ "$run_qgis" = 1 ] && ! dpkg -s "${QGIS_PACKAGES[@]}" >/dev/null 2>&1; then
    # Debian's QGIS 3.22 (about 2.5 min on a fresh machine); skipped once installed.
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${QGIS_PACKAGES[@]}" >/dev/null
fi

set +e
status=5
if [ ${#venv_paths[@]} -gt 0 ] || [ ${#qgis_paths[@]} -eq 0 ]; then
    .venv/bin/python -m pytest -ra "${options[@]}" "${venv_paths[@]}"
    status=$?
fi
if [ "$run_qgis" = 1 ]; then
    [ ${#qgis_paths[@]} -gt 0 ] || qgis_paths=(tests/qgis)
    # --confcutdir: tests/conftest.py imports the project's stack, absent from QGIS's Python.
    QT_QPA_PLATFORM=offscreen "$QGIS_PYTHON" -m pytest -ra -p no:cacheprovider \
        --confcutdir=tests/qgis "${options[@]}" "${qgis_paths[@]}"
    qgis_status=$?
    # pytest exits 5 when it collected no test: a failure, unless the other run had tests.
    if [ "$status" = 5 ] || { [ "$qgis_status" != 0 ] && [ "$qgis_status" != 5 ]; }; then
        status=$qgis_status
    fi
fi
set -e
exit "$status"
