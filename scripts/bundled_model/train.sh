#!/usr/bin/env bash
# Retrain the bundled building model: v3 (every training-licensed source at 0.3 m), then v5,
# v3 fine-tuned on more of the same images (the shipped model; docs/bundled-model.md).
# Building + contact channels (contact weight 0.5, its Dice over the whole batch), negatives
# kept, spatial splits by region (a field prepare_data.py writes on every image). The
# shipped buildings-b0.keras (v3) came from this command on 2 CPU cores (2026-12-03): early
# stopping ended it at epoch 96 after 44 min; threshold, separation threshold and minimum
# area were then chosen on validation by building F1 (ship.py --tune; mapseg train now does
# that itself at the end of a run). Needs ../shared/data and ../shared/weights beside the
# repository. Then: ship.py (per-source held-out scores, provenance), heldout_rasters.sh.
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
    --channels building,contact --channel-weights 1,0.5 --validation-freq 3 \
    --checkpoint-interval 300
# v5 (shipped 2026-12-06): v3's weights fine-tuned with 116 of train/'s 146 images training
# instead of 91, learning rate 1e-4. Early stopping ended it at epoch 21 and kept epoch 6
# (8 min on 2 cores). The shipped run started from the bundled v3.1 file, which holds v3's
# weights in 512 px windows (its SHA-256 is init_model in the model's metadata).
.venv/bin/mapseg train out/bundled-data/train/annotation.json out/bundled-data/train/images \
    -o out/bundled-finetune --overwrite --init-model out/bundled-run/model.keras \
    --epochs 45 --lr-schedule constant --lr-initial 0.0001 --reduce-lr-on-plateau \
    --resize-mode crop --train-size 0.97 --valid-size 0.15 --split-by field:region \
    --channel-weights 1,0.5 --validation-freq 3 --checkpoint-interval 300
