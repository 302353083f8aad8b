"""Does the input pipeline keep the model fed?

Measures, in one run and on the same images:

* pipeline images/s: ``fit`` of a near-free model (one 1x1 conv) on the real
  ``CocoSequence`` (loading, resizing, the seed's augmentation, batching, with
  the configured worker threads), so the time is what Keras waits for data;
* training-step images/s: ``train_on_batch`` of the real U-Net on an
  in-memory batch (no data loading at all).

A ratio pipeline / step above 1 means the model never waits for data.

    $ python bench/bench_pipeline.py --preset b0 --encoder-weights none
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from mapseg_core.config import make_config  # noqa: E402
from mapseg_core.data.coco import load_coco  # noqa: E402
from mapseg_core.data.pipeline import CocoSequence  # noqa: E402
from mapseg_core.models.losses import ComboLoss, make_metrics  # noqa: E402
from mapseg_core.models.unet import build_unet  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "crowdai-sample" / "train"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="b0")
    parser.add_argument("--encoder-weights", default="none")
    parser.add_argument("--annotations", type=Path, default=SAMPLE / "annotation.json")
    parser.add_argument("--images", type=Path, default=SAMPLE / "images")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="passes over the images")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    args = parser.parse_args()

    cfg = make_config(
        args.preset,
        encoder_weights=args.encoder_weights,
        batch_size=args.batch_size,
        workers=args.workers,
    )
    size = cfg.model.input_size
    dataset = load_coco(args.annotations, args.images)
    seq = CocoSequence(
        dataset,
        dataset.image_ids,
        args.batch_size,
        size,
        augment=True,
        shuffle=True,
        workers=args.workers,
    )

    # === Pipeline: a model that costs nothing, fed by the real sequence ===
    probe = keras.Sequential([keras.Input((*size, 3)), keras.layers.Conv2D(1, 1)])
    probe.compile(optimizer="sgd", loss="mse")
    probe.fit(seq, epochs=1, verbose=0, shuffle=False)  # warm-up: graph, threads
    start = time.perf_counter()
    probe.fit(seq, epochs=args.epochs, verbose=0, shuffle=False)
    pipeline_ips = args.epochs * len(dataset.image_ids) / (time.perf_counter() - start)

    # === Model: training steps on an in-memory batch ===
    model = build_unet(cfg.model)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=ComboLoss(), metrics=make_metrics())
    x, y = seq[0]
    x, y = x[: args.batch_size], y[: args.batch_size]
    model.train_on_batch(x, y)  # warm-up: graph building
    start = time.perf_counter()
    for _ in range(args.steps):
        model.train_on_batch(x, y)
    step_ips = args.steps * len(x) / (time.perf_counter() - start)

    print(
        f"preset {args.preset} ({cfg.model.encoder} {size[0]}x{size[1]}), batch {args.batch_size}, "
        f"workers {args.workers}, backend {keras.backend.backend()}, "
        f"{len(dataset.image_ids)} images"
    )
    print(f"pipeline      {pipeline_ips:8.1f} images/s  (load + resize + augment + batch)")
    print(f"training step {step_ips:8.1f} images/s  (forward + backward, data in memory)")
    print(f"ratio pipeline/step = {pipeline_ips / step_ips:.2f}  (> 1: the model never waits)")


if __name__ == "__main__":
    main()
