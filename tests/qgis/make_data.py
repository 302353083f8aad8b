"""Write the QGIS tests' inputs with the project's own Python (TensorFlow lives there, not in QGIS).

Run by ``conftest.py`` as ``<repo>/.venv/bin/python make_data.py OUT_DIR`` with
``PYTHONPATH=<repo>/tests``; prints a JSON object of what it wrote. The
QGIS process never imports keras or mapseg_core: both would clash with
QGIS's numpy and SQLite.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from helpers import make_learnable_coco
from rasters import ORIGIN, make_stub_model, scene, transform, write_raster


def main(out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    img, shapes = scene()
    paths = {
        "model": make_stub_model(out / "stub.keras"),
        "scene": write_raster(out / "scene.tif", img),
        # The scene flipped and 1 km east: a second raster for the batch tests.
        "scene_east": write_raster(
            out / "scene_east.tif",
            np.ascontiguousarray(img[:, ::-1, :]),
            tfm=transform(origin=(ORIGIN[0] + 1000.0, ORIGIN[1])),
        ),
        # Large enough that a 64 px block layout takes many seconds: the cancel test.
        "big": write_raster(out / "big.tif", np.tile(img, (1, 13, 10))),
    }
    # The stub exported for the light (ONNX Runtime) engine.
    from mapseg_core.models.onnx_export import export_onnx

    paths["onnx_model"] = Path(export_onnx(paths["model"], out / "stub.onnx")["output"])
    notes = out / "notes.tif"
    notes.write_text("not a raster")
    fake = out / "fake.keras"
    fake.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    annotations, images = make_learnable_coco(out / "coco", n_images=6)
    result = {k: str(v) for k, v in paths.items()}
    result.update(
        notes=str(notes),
        fake_model=str(fake),
        annotations=str(annotations),
        images=str(images),
        buildings=str(len(shapes)),
    )
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
