"""A trained U-Net with other model windows and working GSD, the weights unchanged.

    $ .venv/bin/python scripts/bundled_model/rewindow.py MODEL.keras OUT.keras \\
          --window 512 --gsd 0.4

tile-infer cuts a raster into model-sized windows and keeps each window's
core: the larger the window, the fewer pixels are predicted twice (a 256 px
window with a 32 px margin predicts 1.78x the raster, a 512 px one 1.31x).
The bundled U-Net's EfficientNet encoder averages over the whole window in its
squeeze-and-excitation blocks, so a window size is part of how it sees the
ground; the U-Net's layers and weights do not depend on it (every stage of a
multiple-of-32 input matches its skip). This rebuilds the network for
``--window`` and records ``--gsd`` as the resolution it runs at; docs/
bundled-model.md has the measurements that chose the bundled model's values.
The training configuration (``config``) is kept as trained.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a mapseg .keras model (a U-Net)")
    parser.add_argument("out", type=Path, help="where to write the rebuilt model")
    parser.add_argument("--window", type=int, required=True, help="model window side, pixels")
    parser.add_argument("--gsd", type=float, help="working GSD in metres (default: the model's)")
    args = parser.parse_args()
    if args.window % 32:
        raise SystemExit(f"--window must be a multiple of 32, got {args.window}")

    from mapseg_core.config import RunConfig
    from mapseg_core.models.artifact import load_artifact, save_artifact
    from mapseg_core.models.unet import can_be_flexible, resized_copy

    model, meta = load_artifact(args.model)
    config = RunConfig.from_dict(meta["config"]).model
    if not can_be_flexible(config):
        raise SystemExit(f"{args.model} was trained at {config.input_size}, not multiples of 32")
    window = (args.window, args.window)
    rebuilt = resized_copy(model, config, window)
    gsd = args.gsd or meta["gsd"]
    updates = {
        "input_size": list(window),
        "gsd": gsd,
        # How this file was made from the trained one (the training command is that run's).
        "rewindowed": {
            "trained_input_size": list(config.input_size),
            "trained_gsd": meta["gsd"],
            "command": f"python scripts/bundled_model/rewindow.py MODEL OUT "
            f"--window {args.window} --gsd {gsd}",
        },
    }
    save_artifact(rebuilt, args.out, {**meta, **updates})
    print(f"{args.model} -> {args.out}: window {window}, gsd {gsd}", file=sys.stderr)


if __name__ == "__main__":
    main()
