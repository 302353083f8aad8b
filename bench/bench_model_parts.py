"""Where a U-Net's predict time goes, by operator, from ONNX Runtime's own profiler.

    .venv/bin/python bench/bench_model_parts.py
    .venv/bin/python bench/bench_model_parts.py --model run/model.onnx --batch 8

Runs the model (default: the bundled ONNX export) on ``--batch`` windows of
its input size, ``--repeat`` times after one warm-up, with ONNX Runtime's
profiler on, and prints each operator type's share of the kernel time. The
U-Net's decoder is its ``ConvTranspose`` (one per upsampling step and the
head) and ``Concat`` nodes; the encoder is most of the ``Conv`` and
activation time. It says where a cheaper network would have to save: the
end-to-end speed of the bundled model is bound by its predict time
(``bench_bundled.py``).

``--variants`` also times, in Keras, untrained U-Nets of the ``b0`` preset
built for the same windows: as shipped, with decoder widths quartered, with
EfficientNet's narrow block outputs as skips, and the encoder alone, so the
part of the time a cheaper decoder could save is measured, not guessed.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import say

from mapseg_core.models.artifact import bundled_model_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="default: bundled ONNX model")
    parser.add_argument("--batch", type=int, default=8, help="windows per run")
    parser.add_argument("--repeat", type=int, default=2, help="profiled runs after a warm-up")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--variants", action="store_true", help="also time Keras variants")
    args = parser.parse_args()
    import onnxruntime as ort

    path = args.model or bundled_model_path("onnx")
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        spec = session.get_inputs()[0]
        shape = [args.batch, *(int(d) for d in spec.shape[1:])]
        image = (np.random.default_rng(0).random(shape) * 255).astype(np.float32)
        for _ in range(args.repeat + 1):
            session.run(None, {spec.name: image})
        events = json.loads(Path(session.end_profiling()).read_text())
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    # Every run has the same nodes; the first one is a warm-up: keep the others.
    per_run = len(nodes) // (args.repeat + 1)
    nodes = nodes[per_run:]
    by_op: collections.Counter[str] = collections.Counter()
    for event in nodes:
        by_op[event["args"]["op_name"]] += event["dur"]
    total = sum(by_op.values())
    mpx = args.batch * shape[2] * shape[3] / 1e6
    seconds = total / 1e6 / args.repeat
    say(f"{path.name}: {args.batch} windows of {shape[2]}x{shape[3]}, {args.threads} threads")
    say(f"kernel time per run {seconds:.3f} s ({mpx / seconds:.2f} Mpx/s)")
    for op, micros in by_op.most_common(10):
        say(f"  {op:24s} {micros / total:6.1%}")
    say(f"decoder upsampling (ConvTranspose) / all: {by_op['ConvTranspose'] / total:.3f}")
    if args.variants:
        variants(args.batch, shape[2], args.repeat + 1)


#: Skips at the same scales as the seed's, taken after each stage's narrow projection.
NARROW_SKIPS = ("block1a_project_bn", "block2b_add", "block3b_add", "block5c_add", "top_activation")


def variants(batch: int, side: int, rounds: int) -> None:
    """Bare predict speed of untrained ``b0`` U-Nets (and the encoder alone), Keras."""
    from mapseg_core.config import PRESETS
    from mapseg_core.models.encoders import build_encoder
    from mapseg_core.models.unet import build_unet

    base = dataclasses.replace(
        PRESETS["b0"].model,
        input_size=(side, side),
        encoder_weights=None,
        output_channels=2,
        channels=("building", "contact"),
    )
    image = (np.random.default_rng(0).random((batch, side, side, 3)) * 255).astype(np.float32)
    for label, config in (
        ("shipped layout", base),
        ("decoder widths / 4", dataclasses.replace(base, decoder_filters=(64, 32, 16, 8))),
        ("narrow skips", dataclasses.replace(base, skip_layers=NARROW_SKIPS)),
    ):
        report(label, build_unet(config), image, rounds)
    from mapseg_core.backend import keras

    inputs = keras.Input((side, side, 3))
    report(
        "encoder alone",
        keras.Model(inputs, build_encoder(base, (side, side))(inputs)),
        image,
        rounds,
    )


def report(label: str, model: object, image: np.ndarray, rounds: int) -> None:
    """Say the best of ``rounds`` timed ``predict_on_batch`` calls after a warm-up."""
    predict = model.predict_on_batch  # type: ignore[attr-defined]
    predict(image)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        predict(image)
        best = min(best, time.perf_counter() - start)
    mpx = image.shape[0] * image.shape[1] * image.shape[2] / 1e6
    say(f"keras, {label:20s} {best:6.3f} s per call  {mpx / best:5.2f} Mpx/s")


if __name__ == "__main__":
    main()
