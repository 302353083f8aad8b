#!/usr/bin/env bash
# Retrain the bundled building model from ../shared/data: building + contact channels,
# negatives kept, spatial splits by source (the chip-name prefix prepare_data.py writes).
# The shipped buildings-b0.keras predates this recipe (commit eb493a4's command, without
# --channels/--split-by, negatives or 90-degree rotations); docs/bundled-model.md compares
# both on the held-out parts.
# Needs ../shared/data and ../shared/weights beside the repository.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
SHARED=${SHARED:-../shared}
.venv/bin/python scripts/bundled_model/prepare_data.py "$SHARED/data" out/bundled-data
.venv/bin/mapseg train out/bundled-data/train/annotation.json out/bundled-data/train/images \
    -o out/bundled-run --overwrite --preset b0 \
    --encoder-weights "$SHARED/weights/efficientnetb0_imagenet_notop.weights.h5" \
    --encoder-trainable --epochs 50 --lr-schedule constant --lr-initial 0.0005 \
    --resize-mode crop --gsd 0.5 --train-size 0.85 --valid-size 0.2 \
    --channels building,contact --split-by 'pattern:^(.+?)__'
