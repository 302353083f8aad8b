#!/usr/bin/env bash
# The main job: set up, train a small building model on the bundled crowdAI
# sample, and evaluate it on the run's own train/valid/test splits.
# Outputs land in out/demo-run (model.keras, report.csv, three PNG figures).
# (The README's main job is scripts/demo.sh: the bundled model on the bundled raster.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
SAMPLE=examples/crowdai-sample/train
# ImageNet EfficientNetB0 weights: a local file if one is given or beside the repo,
# otherwise Keras downloads them (needs internet).
WEIGHTS=${MAPSEG_ENCODER_WEIGHTS:-../shared/weights/efficientnetb0_imagenet_notop.weights.h5}
[ -f "$WEIGHTS" ] || WEIGHTS=imagenet
.venv/bin/mapseg train "$SAMPLE/annotation.json" "$SAMPLE/images" -o out/demo-run --overwrite \
    --preset b0 --epochs "${EPOCHS:-60}" --lr-schedule constant --lr-initial 0.001 \
    --encoder-weights "$WEIGHTS"
.venv/bin/mapseg evaluate out/demo-run/model.keras "$SAMPLE/annotation.json" "$SAMPLE/images" \
    --split-file out/demo-run/splits.json --csv out/demo-run/evaluation.csv --overwrite
echo "model and figures: out/demo-run/"
