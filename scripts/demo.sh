#!/usr/bin/env bash
# The main job: set up on a fresh machine, find the buildings in the bundled
# aerial sample with the bundled model (offline), and draw them over the image.
# Writes out/demo/buildings.gpkg and out/demo/preview.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
mkdir -p out/demo
.venv/bin/mapseg tile-infer examples/inria-austin-sample.tif -o out/demo/buildings.gpkg --overwrite
.venv/bin/mapseg preview examples/inria-austin-sample.tif out/demo/buildings.gpkg \
    -o out/demo/preview.png --overwrite
