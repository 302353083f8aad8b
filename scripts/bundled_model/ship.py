"""Score a trained model per held-out source and ship it as the bundled model.

    $ .venv/bin/python scripts/bundled_model/ship.py out/bundled-run/model.keras out/bundled-data \\
          --tune --compare mapseg_core/models/bundled/buildings-b0.keras \\
          --ship mapseg_core/models/bundled/buildings-b0.keras --scores out/heldout-scores.json

For each source of ``DATA/heldout`` and ``DATA/evaluation-only`` (the sets
``prepare_data.py`` writes; every image record names its ``source``), the model
is scored with ``mapseg evaluate``'s own code (pixel Dice, building F1@0.5, COCO
AP, polygon quality) on that source's images alone, at the model's GSD. The
table (and, with ``--compare``, the same table for another model) is printed as
Markdown for docs/bundled-model.md.

``--tune`` first chooses the model's threshold, separation threshold and
minimum area on ``DATA/valid`` by building F1 (:mod:`mapseg_core.training.tune`,
what ``mapseg train`` now does at the end of a run; for models trained
before it) and scores and ships the tuned settings.

``--ship PATH`` writes the model there with its provenance merged into the
metadata, and its ONNX export next to it (``PATH`` with ``.onnx``, for the light
engine): the data sources with licence, credit and counts, the training
command, and these per-source held-out scores. Nothing in it names a folder of
this machine (the sources are named, the command is train.sh's, relative).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: The figures each source row shows, as keys of ``evaluate_model``'s result.
COLUMNS = {
    "Dice": "dice_coef",
    "F1@0.5": "F1@0.5",
    "AP": "AP",
    "C-IoU": "C-IoU",
    "matched C-IoU": "matched_C-IoU",
    "N-ratio": "N-ratio",
}
#: Every figure kept in the metadata per source.
KEPT = (*COLUMNS.values(), "iou_coef", "precision@0.5", "recall@0.5", "AP50", "PoLiS_px")
SETS = ("heldout", "evaluation-only")
#: Sources whose labels are raster masks: their reference outlines are pixel staircases.
MASK_LABELLED = ("inria-austin", "spacenet-rio", "jonkoping-barnarp")


def _prepare_data() -> Any:
    """``prepare_data.py`` as a module (its SOURCES hold each source's credit)."""
    spec = importlib.util.spec_from_file_location("prepare_data", HERE / "prepare_data.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def source_subsets(coco: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One COCO dict per image ``source`` of ``coco``, categories kept, ids unchanged."""
    images: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for image in coco["images"]:
        images[str(image.get("source", "unknown"))].append(image)
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].append(ann)
    return {
        source: {
            "images": imgs,
            "annotations": [a for img in imgs for a in by_image[img["id"]]],
            "categories": coco["categories"],
        }
        for source, imgs in sorted(images.items())
    }


def score_sources(model: Path, data: Path) -> dict[str, dict[str, Any]]:
    """``{source: {"set", "images", "buildings", <figures>}}`` for every held-out source."""
    from mapseg_core.training.evaluate import evaluate_model

    scores: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mapseg-ship-") as tmp:
        for set_name in SETS:
            folder = data / set_name
            coco = json.loads((folder / "annotation.json").read_text())
            for source, subset in source_subsets(coco).items():
                if not subset["annotations"]:
                    continue
                path = Path(tmp) / f"{set_name}-{source}.json"
                path.write_text(json.dumps(subset))
                result = evaluate_model(model, path, folder / "images")["all"]
                annotated = {a["image_id"] for a in subset["annotations"]}
                scores[source] = {
                    "set": set_name,
                    "images": len(annotated),
                    "buildings": len(subset["annotations"]),
                    **{k: round(float(result[k]), 4) for k in KEPT if k in result},
                }
                print(f"scored {source}: Dice {result['dice_coef']:.3f}", file=sys.stderr)
    return scores


def pooled_scores(model: Path, data: Path) -> dict[str, dict[str, Any]]:
    """Held-out chips pooled: all of them, and those whose references a person drew.

    Vertex counts (N-ratio, C-IoU) mean something only against drawn outlines:
    the sources labelled by raster masks (``MASK_LABELLED``) have pixel
    staircases as references, tens of vertices per house.
    """
    from mapseg_core.training.evaluate import evaluate_model

    coco = json.loads((data / "heldout" / "annotation.json").read_text())
    drawn = [s for name, s in source_subsets(coco).items() if name not in MASK_LABELLED]
    subsets = {
        "all held-out chips": coco,
        "held-out chips with drawn references": {
            "images": [i for s in drawn for i in s["images"]],
            "annotations": [a for s in drawn for a in s["annotations"]],
            "categories": coco["categories"],
        },
    }
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mapseg-ship-") as tmp:
        for name, subset in subsets.items():
            path = Path(tmp) / "pooled.json"
            path.write_text(json.dumps(subset))
            result = evaluate_model(model, path, data / "heldout" / "images")["all"]
            annotated = {a["image_id"] for a in subset["annotations"]}
            out[name] = {
                "set": "heldout",
                "images": len(annotated),
                "buildings": len(subset["annotations"]),
                "sources": sorted({str(i.get("source")) for i in subset["images"]}),
                **{k: round(float(v), 4) for k, v in result.items()},
            }
    return out


def tuned_copy(model: Path, data: Path, out: Path) -> dict[str, Any]:
    """``model`` with post-processing chosen on ``DATA/valid`` written to ``out``; the choice."""
    from mapseg_core.data.coco import load_coco
    from mapseg_core.models.artifact import load_artifact, update_metadata
    from mapseg_core.training.tune import metadata_updates, tune_postprocessing

    keras_model, meta = load_artifact(model)
    categories = meta.get("config", {}).get("train", {}).get("category_ids")
    valid = data / "valid"
    # Negatives kept: fragments on empty chips are false positives a user would get too.
    dataset = load_coco(
        valid / "annotation.json", valid / "images", categories, include_negatives=True
    ).at_gsd(float(meta["gsd"]), None)
    best, scored = tune_postprocessing(keras_model, meta, dataset, dataset.image_ids)
    updates = metadata_updates(meta, best)
    updates["postprocess_search"] = [c.row() for c in scored]
    update_metadata(model, updates, out)
    print(f"tuned on {len(dataset.image_ids)} validation images: {best.row()}", file=sys.stderr)
    return best.row()


def markdown_table(scores: dict[str, dict[str, Any]], before: dict[str, Any] | None) -> str:
    """Per-source rows; with ``before``, each figure reads ``new (old)``."""
    head = ["source", "set", "images / buildings", *COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for source, row in scores.items():
        cells = [source, row["set"], f"{row['images']} / {row['buildings']}"]
        for key in COLUMNS.values():
            value = f"{row[key]:.3f}" if key in row else "—"
            if before and key in before.get(source, {}):
                value += f" ({before[source][key]:.3f})"
            cells.append(value)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def training_command() -> str:
    """train.sh's ``mapseg train`` commands in order (continuation lines joined, ``&&``)."""
    text = (HERE / "train.sh").read_text()
    commands = re.findall(r"^\.venv/bin/(mapseg train .*?[^\\])$", text, re.S | re.M)
    if not commands:
        raise SystemExit("train.sh has no mapseg train command; fix scripts/bundled_model/train.sh")
    return " && ".join(re.sub(r"\s*\\\n\s*", " ", command) for command in commands)


def provenance(data: Path, scores: dict[str, dict[str, Any]], gsd: float) -> dict[str, Any]:
    """The metadata fields ``--ship`` adds: name, credits, sources, command, scores.

    ``gsd``: the resolution the model runs at (its chips were cut at the data's).
    """
    prep = _prepare_data()
    manifest = json.loads((data / "manifest.json").read_text())
    sources = {
        name: {
            "licence": entry["licence"],
            "credit": prep.SOURCES[name].credit if name in prep.SOURCES else "",
            "use": entry["use"],
            "heldout_rule": entry["heldout_rule"],
            "counts": entry["counts"],
            "source_gsd_m": entry.get("source_gsd_m"),
        }
        for name, entry in manifest["sources"].items()
    }
    trained = [s for s in sources.values() if s["use"] == "train"]
    return {
        "name": f"mapseg bundled building model (EfficientNetB0 U-Net, {gsd} m)",
        # "attribution (Inria ..., Maggiori et al. 2017)" -> "attribution": the credit says the rest
        "credits": sorted({f"{s['credit']} ({s['licence'].split(' (')[0]})" for s in trained}),
        "training_data_sources": sources,
        "training_command": training_command(),
        "heldout_scores": scores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="the trained model (RUN/model.keras)")
    parser.add_argument("data", type=Path, help="prepare_data.py's output folder")
    parser.add_argument("--compare", type=Path, help="another model to score the same way")
    parser.add_argument("--ship", type=Path, help="write the model here with its provenance")
    parser.add_argument("--scores", type=Path, help="write all scores as JSON here")
    parser.add_argument(
        "--tune",
        action="store_true",
        help="choose threshold, separation threshold and min area on DATA/valid first",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mapseg-tune-") as tmp:
        model = args.model
        if args.tune:
            model = Path(tmp) / args.model.name
            tuned_copy(args.model, args.data, model)
        _score_and_ship(model, args)


def _score_and_ship(model: Path, args: argparse.Namespace) -> None:
    scores = score_sources(model, args.data)
    before = score_sources(args.compare, args.data) if args.compare else None
    pooled = pooled_scores(model, args.data)
    pooled_before = pooled_scores(args.compare, args.data) if args.compare else None
    if args.scores:
        record = {
            "model": scores,
            "compare": before,
            "pooled": pooled,
            "compare_pooled": pooled_before,
        }
        args.scores.write_text(json.dumps(record, indent=2))
    print(markdown_table({**scores, **pooled}, {**(before or {}), **(pooled_before or {})}))
    if args.ship:
        from mapseg_core.models.artifact import read_metadata, update_metadata

        gsd = float(read_metadata(model)["gsd"])
        update_metadata(model, provenance(args.data, scores, gsd), args.ship)
        print(f"shipped {args.model} -> {args.ship}", file=sys.stderr)
        # The same model for the light ONNX engine (tests/models/test_bundled_model.py
        # fails when the two files are not one model).
        from mapseg_core.models.onnx_export import export_onnx

        done = export_onnx(args.ship, args.ship.with_suffix(".onnx"), overwrite=True)
        print(f"exported {args.ship} -> {done['output']}", file=sys.stderr)


if __name__ == "__main__":
    main()
