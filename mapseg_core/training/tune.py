"""Post-processing chosen on validation data by building F1, for the polygons a user gets.

A model's pixel threshold chosen by pixel F1 (Dice) is not the one that
gives the best buildings: fragments around a roof count little in Dice and
a lot in building F1@0.5 (every fragment is a false positive), and with a
contact channel the separation threshold decides whether a house is split
in two. :func:`tune_postprocessing` predicts the validation images once
(:func:`~mapseg_core.evaluation.model.model_probabilities`) and scores
every combination of

* ``threshold``: building probability from which a pixel is a building;
* ``separation.threshold``: contact/boundary probability from which a
  building pixel is no marker (models with a separating channel only);
* ``polish.min_area_m2``: buildings smaller than this are not written;

by building F1@0.5 (SpaceNet rule) of the polygons tile-infer would write
with them, ties going to the higher AP, then to the smaller change from the
model's settings. The winner is written into the model's metadata, so
tile-infer, ``mapseg evaluate`` and QGIS all use it; ``postprocess_search``
keeps every candidate's figures.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mapseg_core.progress import Reporter, null_reporter

#: Candidates of each setting (validation sets are small: a short, coarse grid).
THRESHOLDS: tuple[float, ...] = (0.4, 0.5, 0.6, 0.7, 0.8)
SEPARATION_THRESHOLDS: tuple[float, ...] = (0.15, 0.2, 0.3, 0.5)
MIN_AREAS_M2: tuple[float, ...] = (2.0, 10.0, 25.0)


@dataclass(frozen=True)
class Candidate:
    """One post-processing setting and its validation figures."""

    threshold: float
    separation_threshold: float | None
    min_area_m2: float
    figures: dict[str, float]

    def row(self) -> dict[str, float | None]:
        """The candidate as one flat record (for metadata and reports)."""
        keep = ("F1@0.5", "precision@0.5", "recall@0.5", "AP", "C-IoU", "N-ratio")
        return {
            "threshold": self.threshold,
            "separation_threshold": self.separation_threshold,
            "min_area_m2": self.min_area_m2,
            **{k: round(float(self.figures[k]), 4) for k in keep if k in self.figures},
        }


def candidate_metadata(metadata: dict[str, Any], candidate: Candidate) -> dict[str, Any]:
    """``metadata`` with the candidate's settings (a deep copy; the input is not changed)."""
    out = copy.deepcopy(metadata)
    out["threshold"] = candidate.threshold
    if candidate.separation_threshold is not None:
        separation = dict(out.get("separation") or {})
        separation["threshold"] = candidate.separation_threshold
        out["separation"] = separation
    polish = dict(out.get("polish") or {})
    polish["min_area_m2"] = candidate.min_area_m2
    out["polish"] = polish
    return out


def metadata_updates(metadata: dict[str, Any], candidate: Candidate) -> dict[str, Any]:
    """The top-level metadata keys the candidate changes (for ``artifact.update_metadata``)."""
    chosen = candidate_metadata(metadata, candidate)
    keys = ("threshold", "separation", "polish")
    return {k: chosen[k] for k in keys if k in chosen}


def tune_postprocessing(
    model: Any,
    metadata: dict[str, Any],
    dataset: Any,
    image_ids: Sequence[int],
    *,
    thresholds: Sequence[float] = THRESHOLDS,
    separation_thresholds: Sequence[float] = SEPARATION_THRESHOLDS,
    min_areas_m2: Sequence[float] = MIN_AREAS_M2,
    batch_size: int = 8,
    report: Reporter = null_reporter,
) -> tuple[Candidate, list[Candidate]]:
    """The best post-processing on ``image_ids`` (validation) and every candidate scored.

    Args:
        model: any ``predict_on_batch`` model (Keras, or the ONNX wrapper).
        metadata: the model file's metadata (GSD, channels, separation, polish).
        dataset: a :class:`~mapseg_core.data.coco.CocoDataset` at the model's GSD.
        image_ids: the validation images; they need buildings for F1 to mean anything.

    Raises:
        ValueError: no image ids, or an empty candidate list.
    """
    from mapseg_core.evaluation.model import (
        ground_truth,
        instances_from_probabilities,
        model_probabilities,
        polygon_scores,
    )
    from mapseg_core.inference.plan import model_channels

    ids = [int(i) for i in image_ids]
    if not ids or not thresholds or not min_areas_m2:
        raise ValueError("tune_postprocessing needs image ids and candidates to score")
    probabilities = model_probabilities(model, metadata, dataset, ids, batch_size)
    truth = ground_truth(dataset, ids)
    _, separation = model_channels(metadata, None)
    seps: Sequence[float | None] = separation_thresholds if separation is not None else [None]
    grid = list(itertools.product(thresholds, seps, min_areas_m2))
    report({"event": "start", "total": len(grid), "unit": "setting"})
    scored: list[Candidate] = []
    for done, (thr, sep, area) in enumerate(grid, start=1):
        candidate = Candidate(float(thr), None if sep is None else float(sep), float(area), {})
        predictions = instances_from_probabilities(
            probabilities, candidate_metadata(metadata, candidate), candidate.threshold
        )
        figures, _ = polygon_scores(truth, predictions)
        scored.append(dataclasses.replace(candidate, figures=figures))
        report(
            {"event": "progress", "done": done, "total": len(grid), "fraction": done / len(grid)}
        )
    current = Candidate(
        float(metadata.get("threshold", 0.5)),
        float((metadata.get("separation") or {}).get("threshold", 0.5)),
        float((metadata.get("polish") or {}).get("min_area_m2", 0.0)),
        {},
    )
    best = max(scored, key=lambda c: _rank(c, current))
    report({"event": "done", "summary": best.row()})
    return best, scored


def _rank(c: Candidate, current: Candidate) -> tuple[float, float, float]:
    """Building F1, then AP, then closeness to the model's current settings."""
    change = (
        abs(c.threshold - current.threshold)
        + abs((c.separation_threshold or 0.0) - (current.separation_threshold or 0.0))
        + abs(c.min_area_m2 - current.min_area_m2) / 100.0
    )
    f1 = float(c.figures.get("F1@0.5", 0.0))
    ap = float(c.figures.get("AP", 0.0))
    # NaN (no building at all) ranks last.
    return (round(f1, 6) if f1 == f1 else -1.0, round(ap, 6) if ap == ap else -1.0, -change)


__all__ = [
    "MIN_AREAS_M2",
    "SEPARATION_THRESHOLDS",
    "THRESHOLDS",
    "Candidate",
    "candidate_metadata",
    "metadata_updates",
    "tune_postprocessing",
]
