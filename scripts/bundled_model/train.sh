#!/usr/bin/env bash
# Retrain the bundled building model (v2 data: every training-licensed source at 0.3 m).
# Building + contact channels, negatives kept, spatial splits by region (a field
# prepare_data.py writes on every image). Run on 2 CPU cores (2026-12-02, 2026-12-03): early
# stopping ended it at epoch 86-93 after 40-90 min; not shipped yet (docs/bundled-model.md).
# Needs ../shared/data and ../shared/weights beside the repository.
# The shipped buildings-b0.keras (v1, 0.5 m) was made by this script at commit 7d4d993.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
SHARED=${SHARED:-../shared}
.venv/bin/python scripts/bundled_model/prepare_data.py "$SHARED/data" out/bundled-data
# train/ holds only training regions; its validation split is drawn inside them, so the
# held-out regions (out/bundled-data/heldout, evaluation-only) stay unseen.
.venv/bin/mapseg train out/bundled-data/train/annotation.json out/bundled-data/train/images \
    -o out/bundled-run --overwrite --preset b0 \
    --encoder-weights "$SHARED/weights/efficientnetb0_imagenet_notop.weights.h5" \
    --encoder-trainable --epochs 150 --lr-schedule constant --lr-initial 0.0005 \
    --reduce-lr-on-plateau \
    --resize-mode crop --gsd 0.3 --train-size 0.9 --split-by field:region \
    --channels building,contact --channel-weights 1,0.25 --validation-freq 3 \
    --checkpoint-interval 300
