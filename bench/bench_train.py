"""Does ``mapseg train`` keep up with the bare training step?

Measures, in one run, on the same model configuration, batch size and data:

* bare step chips/s: ``train_on_batch`` of a fresh U-Net on the training
  split's batches, prepared in memory beforehand (no loading, no callbacks,
  no validation, no checkpoints): the most a training loop can reach;
* ``mapseg train`` chips/s: :func:`mapseg_core.training.train.train` on the
  same COCO set, in its steady state (the first epoch, which traces the
  graph, is left out): training chips per second of wall time over the
  following epochs, validation, checkpoints and data loading included.

``mapseg train`` runs twice: as it was before (a checkpoint and a validation
after every epoch: ``checkpoint_interval=0``) and with the defaults (or the
``--option`` values); the bare rate is taken before and after both (other
jobs share the cores), the faster counts. It prints each ratio (target:
>= 0.85) with where the wall time went:
training batches, the gap between an epoch's last batch and its end
(validation + checkpoints), and the gap before the next epoch's first batch.

The data is the bundled crowdAI sample (20 tiles, 300 px), repeated to
``--images`` entries so an epoch has as many steps as a small real run.

    $ python bench/bench_train.py --preset b0 --encoder-weights none
    $ python bench/bench_train.py --preset tiny --epochs 8   # seconds, for a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mapseg_core.backend import keras  # noqa: E402
from mapseg_core.config import make_config  # noqa: E402
from mapseg_core.data.coco import load_coco  # noqa: E402
from mapseg_core.data.pipeline import make_sequences  # noqa: E402
from mapseg_core.data.splits import make_splits  # noqa: E402
from mapseg_core.training.train import _new_model, train  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "crowdai-sample" / "train"


def repeated_coco(source: Path, out: Path, n: int) -> Path:
    """A COCO file listing the images of ``source`` cyclically, ``n`` entries in all."""
    data = json.loads(source.read_text())
    images, annotations = [], []
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for k in range(n):
        image = data["images"][k % len(data["images"])]
        images.append({**image, "id": k + 1})
        for ann in by_image.get(image["id"], []):
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": k + 1})
    out.write_text(
        json.dumps({**data, "images": images, "annotations": annotations}), encoding="utf-8"
    )
    return out


class Timeline:
    """A ``report`` for :func:`train` that timestamps its batch and epoch events."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, int]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind in ("progress", "epoch"):
            self.events.append((time.perf_counter(), str(kind), int(event.get("epoch", 0))))

    def breakdown(self, first_epoch: int) -> dict[str, float]:
        """Seconds spent in batches, epoch ends and epoch starts from ``first_epoch`` on."""
        out = {"batches": 0.0, "epoch_end": 0.0, "epoch_start": 0.0, "wall": 0.0}
        prev: tuple[float, str, int] | None = None
        for ev in self.events:
            if prev is not None and ev[2] >= first_epoch:
                dt = ev[0] - prev[0]
                if ev[1] == "epoch":
                    out["epoch_end"] += dt
                elif prev[1] == "epoch":
                    out["epoch_start"] += dt
                else:
                    out["batches"] += dt
                out["wall"] += dt
            prev = ev
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="b0")
    parser.add_argument("--encoder-weights", default="none")
    parser.add_argument("--images", type=int, default=64, help="COCO entries (sample repeated)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra TrainConfig field for the mapseg run, e.g. validation_freq=1",
    )
    args = parser.parse_args()
    extra: dict[str, Any] = {}
    for item in args.option:
        name, _, value = item.partition("=")
        extra[name] = json.loads(value)

    config = make_config(
        args.preset,
        encoder_weights=args.encoder_weights,
        batch_size=args.batch_size,
        epochs=args.epochs,
        workers=args.workers,
        resize_mode="crop",
        train_size=0.85,
        valid_size=0.2,
        **extra,
    )
    with tempfile.TemporaryDirectory() as tmp:
        ann = repeated_coco(SAMPLE / "annotation.json", Path(tmp) / "annotation.json", args.images)
        dataset = load_coco(ann, SAMPLE / "images")
        tc = config.train
        splits = make_splits(dataset.image_ids, tc.train_size, tc.valid_size, tc.seed)
        train_seq = make_sequences(dataset, splits, config.model.input_size, tc)["train"]
        batches = [train_seq[i] for i in range(len(train_seq))]
        chips_per_epoch = len(splits.train)

        # === Bare: train_on_batch over the same batches, in memory ===
        def bare_rate() -> float:
            model = _new_model(config)
            model.train_on_batch(*batches[0])  # warm-up: graph building
            start = time.perf_counter()
            rounds = max(1, args.epochs - 1)
            for _ in range(rounds):
                for x, y in batches:
                    model.train_on_batch(x, y)
            return rounds * chips_per_epoch / (time.perf_counter() - start)

        # === mapseg train: the whole loop, steady state (epochs 2..N) ===
        def mapseg_rate(run: str, cfg: Any) -> tuple[float, dict[str, float]]:
            timeline = Timeline()
            train(ann, SAMPLE / "images", Path(tmp) / run, cfg, report=timeline)
            parts = timeline.breakdown(first_epoch=2)
            return (args.epochs - 1) * chips_per_epoch / parts["wall"], parts

        # Other jobs share the cores: the bare rate is taken before and after, the faster counts.
        bare = bare_rate()
        old, old_parts = mapseg_rate(
            "every-epoch",
            dataclasses.replace(
                config,
                train=dataclasses.replace(config.train, checkpoint_interval=0.0, validation_freq=1),
            ),
        )
        ours, parts = mapseg_rate("run", config)
        bare = max(bare, bare_rate())

    print(
        f"preset {args.preset} ({config.model.encoder} {config.model.input_size[0]}px), "
        f"batch {args.batch_size}, {chips_per_epoch} training chips/epoch, "
        f"{len(splits.valid)} validation chips, epochs {args.epochs}, "
        f"backend {keras.backend.backend()}, options {extra or 'defaults'}"
    )
    print(f"bare train_on_batch  {bare:7.2f} chips/s  (best of two, before and after)")
    for label, rate, wall in (
        ("mapseg train, save+validate every epoch (before)", old, old_parts),
        (f"mapseg train, {extra or 'defaults'}", ours, parts),
    ):
        share = ", ".join(f"{k} {v / wall['wall']:.0%}" for k, v in wall.items() if k != "wall")
        print(f"{label}: {rate:.2f} chips/s, ratio {rate / bare:.2f}  [{share}]")
    print("(epoch_end = validation + checkpoints + logs; epoch_start includes the first batch)")
    print(f"ratio mapseg/bare = {ours / bare:.2f}  (target >= 0.85)")


if __name__ == "__main__":
    main()
