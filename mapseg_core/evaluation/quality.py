"""Pure polygon-quality metrics: how well outlines are drawn, beyond "is the building found".

Definitions follow ``shared/specs/polygon-metrics.md`` (the reference code of
PolyWorld, HiSup and Frame Field Learning):

* **mask IoU**: IoU of the union of predictions with the union of references
  (per image, averaged over images);
* **boundary IoU** (Cheng et al. 2021): the same IoU restricted to the band
  within ``d`` of each union's contour, inside it;
* **C-IoU** (PolyWorld): ``IoU x (1 - |N - N_ref| / (N + N_ref))`` with ``N``
  the vertex counts of the image's exterior rings (closing vertex not
  counted); per image, averaged. **Matched C-IoU** applies the same factor to
  each matched pair (the issue's "C-IoU of matched buildings");
* **N-ratio**: predicted vertices / reference vertices (1 is ideal; pixel
  staircases give 10-20);
* **PoLiS** (Avbelj et al.): for each reference, the prediction of largest
  bounding-box IoU, if above 0.5; the mean distance of each polygon's vertices
  to the other's boundary, both ways, summed and halved; averaged over pairs;
* **MTA** (max tangent angle error, FFL): the prediction's contour sampled
  every ``step``, projected onto the reference contours; the angle between
  each sampled edge and its projection (FFL's rule: edges stretched more than
  2x by the projection, e.g. across a reference corner, are left out); the
  largest per polygon, averaged over predictions whose precision (share of
  area inside references) is above 0.5.

Every figure is pooled through :class:`QualitySums` (sums and counts), so per-
image results add up exactly, whatever the order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import cv2
import numpy as np
import shapely
from numpy.typing import NDArray

#: Table keys of :meth:`QualitySums.figures`, in report order (the PoLiS unit is added).
QUALITY_KEYS: tuple[str, ...] = (
    "mask_IoU",
    "boundary_IoU",
    "C-IoU",
    "matched_C-IoU",
    "N-ratio",
    "PoLiS",
    "MTA",
)


def vertex_count(geom: Any) -> int:
    """Vertices of the exterior rings of a (multi)polygon, closing vertex not counted."""
    total = 0
    for part in shapely.get_parts(geom):
        if part.geom_type == "Polygon" and not part.is_empty:
            total += len(part.exterior.coords) - 1
    return total


def complexity(n: int, n_ref: int) -> float:
    """PolyWorld's vertex-count agreement ``1 - |N - N_ref| / (N + N_ref)`` (1: same count)."""
    return 1.0 if n + n_ref == 0 else 1.0 - abs(n - n_ref) / (n + n_ref)


def polis(a: Any, b: Any) -> float:
    """PoLiS distance of two polygons (exterior rings), in their coordinate unit."""
    va = shapely.points(np.asarray(a.exterior.coords)[:-1])
    vb = shapely.points(np.asarray(b.exterior.coords)[:-1])
    da = shapely.distance(va, b.exterior)
    db = shapely.distance(vb, a.exterior)
    return float((np.mean(da) + np.mean(db)) / 2)


def _bbox_iou(a: Any, b: Any) -> float:
    ax0, ay0, ax1, ay1 = a.bounds
    bx0, by0, bx1, by1 = b.bounds
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def polis_pairs(preds: Sequence[Any], refs: Sequence[Any]) -> list[tuple[int, int]]:
    """(prediction, reference) pairs PoLiS is computed on: per reference, best bbox IoU > 0.5."""
    if not preds or not refs:
        return []
    tree = shapely.STRtree(shapely.envelope(np.asarray(list(preds), dtype=object)))
    pairs = []
    for r, ref in enumerate(refs):
        best, best_iou = -1, 0.5
        for p in tree.query(shapely.envelope(ref)).tolist():
            iou = _bbox_iou(preds[p], ref)
            if iou > best_iou:
                best, best_iou = p, iou
        if best >= 0:
            pairs.append((best, r))
    return pairs


def _sample_ring(coords: NDArray[np.float64], step: float) -> NDArray[np.float64]:
    """Points every ``step`` along a closed ring, its vertices kept (FFL samples that way)."""
    seg = np.diff(coords, axis=0)
    lengths = np.hypot(seg[:, 0], seg[:, 1])
    out = [coords[:1]]
    for k in np.flatnonzero(lengths > 0):
        n = max(1, math.ceil(lengths[k] / step))
        t = np.arange(1, n + 1, dtype=np.float64)[:, None] / n
        out.append(coords[k] + t * seg[k])
    return np.concatenate(out)


def max_tangent_error(
    pred: Any, ref_boundary: Any, step: float, max_stretch: float = 2.0
) -> float | None:
    """Largest angle (degrees) between ``pred``'s contour and its projection on ``ref_boundary``.

    Returns None when no sampled edge survives the stretch filter.
    """
    worst: float | None = None
    for part in shapely.get_parts(pred):
        for ring in (part.exterior, *part.interiors):
            pts = _sample_ring(np.asarray(ring.coords, dtype=np.float64), step)
            if len(pts) < 2:
                continue
            lines = shapely.shortest_line(shapely.points(pts), ref_boundary)
            proj = shapely.get_coordinates(lines).reshape(-1, 2, 2)[:, 1]
            edges = np.diff(pts, axis=0)
            proj_edges = np.diff(proj, axis=0)
            n_e = np.hypot(edges[:, 0], edges[:, 1])
            n_p = np.hypot(proj_edges[:, 0], proj_edges[:, 1])
            ok = (n_e > 0) & (n_p > 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                stretch = n_e / n_p
            ok &= (stretch > 1 / max_stretch) & (stretch < max_stretch)
            if not ok.any():
                continue
            cos = np.abs(np.sum(edges[ok] * proj_edges[ok], axis=1)) / (n_e[ok] * n_p[ok])
            angle = float(np.degrees(np.arccos(np.clip(cos, 0.0, 1.0))).max())
            worst = angle if worst is None else max(worst, angle)
    return worst


def boundary_iou_geometry(pred: Any, ref: Any, width: float) -> float:
    """Boundary IoU of two (multi)polygons: IoU of their inner bands of ``width``."""
    bands = []
    for geom in (pred, ref):
        if geom.is_empty:
            bands.append(shapely.Polygon())
        else:
            bands.append(shapely.intersection(geom, shapely.buffer(geom.boundary, width)))
    union = shapely.area(shapely.union(bands[0], bands[1]))
    if union == 0:
        return 1.0
    return float(shapely.area(shapely.intersection(bands[0], bands[1])) / union)


def boundary_band(mask: NDArray[np.bool_], ratio: float = 0.02) -> NDArray[np.bool_]:
    """Pixels of ``mask`` within ``ratio`` x image diagonal of its contour (Cheng et al.)."""
    h, w = mask.shape
    d = max(1, round(ratio * math.hypot(h, w)))
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:-1, 1:-1]
    return mask & ~eroded.astype(bool)


def mask_ious(
    pred: NDArray[np.bool_], ref: NDArray[np.bool_], ratio: float = 0.02
) -> tuple[float, float]:
    """(mask IoU, boundary IoU) of two masks on one image grid (both 1 when both are empty)."""

    def iou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
        union = int(np.count_nonzero(a | b))
        return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union

    return iou(pred, ref), iou(boundary_band(pred, ratio), boundary_band(ref, ratio))


@dataclass(frozen=True)
class QualitySums:
    """Sums and counts behind the quality figures of one or more images (add them to pool)."""

    images: int = 0
    mask_iou: float = 0.0
    boundary_iou: float = 0.0
    c_iou: float = 0.0
    vertices: int = 0
    ref_vertices: int = 0
    matched: int = 0
    matched_c_iou: float = 0.0
    polis_pairs: int = 0
    polis: float = 0.0
    mta_polygons: int = 0
    mta: float = 0.0

    def __add__(self, other: QualitySums) -> QualitySums:
        return QualitySums(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def figures(self, polis_unit: str = "m") -> dict[str, float]:
        """Means and ratios; a figure with nothing to average over is NaN."""
        nan = math.nan
        return {
            "mask_IoU": self.mask_iou / self.images if self.images else nan,
            "boundary_IoU": self.boundary_iou / self.images if self.images else nan,
            "C-IoU": self.c_iou / self.images if self.images else nan,
            "matched_C-IoU": self.matched_c_iou / self.matched if self.matched else nan,
            "N-ratio": self.vertices / self.ref_vertices if self.ref_vertices else nan,
            f"PoLiS_{polis_unit}": self.polis / self.polis_pairs if self.polis_pairs else nan,
            "MTA": self.mta / self.mta_polygons if self.mta_polygons else nan,
            "vertices": float(self.vertices),
            "reference_vertices": float(self.ref_vertices),
        }


def image_quality(
    preds: Sequence[Any],
    refs: Sequence[Any],
    pairs: Sequence[tuple[int, int]],
    pair_ious: Sequence[float],
    *,
    mask_iou: float,
    boundary_iou: float,
    mta_step: float,
    unit: float = 1.0,
) -> QualitySums:
    """Quality sums of one image (or one layer) of predicted and reference polygons.

    Args:
        preds, refs: polygons in one coordinate system.
        pairs, pair_ious: the building matches (:class:`MatchResult` ``pairs``
            and ``ious``), for matched C-IoU.
        mask_iou, boundary_iou: the image's IoUs (computed on its pixel grid
            or from areas by the caller).
        mta_step: contour sampling step of MTA, in coordinate units.
        unit: reported unit per coordinate unit for PoLiS (metres per CRS unit).
    """
    counts = [vertex_count(g) for g in preds]
    ref_counts = [vertex_count(g) for g in refs]
    n, n_ref = sum(counts), sum(ref_counts)
    matched = sum(
        iou * complexity(counts[p], ref_counts[r])
        for (p, r), iou in zip(pairs, pair_ious, strict=True)
    )
    pol_pairs = [
        (p, r)
        for p, r in polis_pairs(preds, refs)
        if preds[p].geom_type == "Polygon" and refs[r].geom_type == "Polygon"
    ]
    pol = sum(polis(preds[p], refs[r]) for p, r in pol_pairs) * unit
    mta_sum, mta_n = 0.0, 0
    if preds and refs:
        ref_arr = np.asarray(list(refs), dtype=object)
        tree = shapely.STRtree(ref_arr)
        for pred in preds:
            near = ref_arr[tree.query(pred, predicate="intersects")]
            if len(near) == 0 or pred.area == 0:
                continue
            covered = shapely.union_all(near)
            if shapely.area(shapely.intersection(pred, covered)) / pred.area <= 0.5:
                continue
            angle = max_tangent_error(pred, shapely.boundary(covered), mta_step)
            if angle is not None:
                mta_sum += angle
                mta_n += 1
    return QualitySums(
        images=1,
        mask_iou=mask_iou,
        boundary_iou=boundary_iou,
        c_iou=mask_iou * complexity(n, n_ref),
        vertices=n,
        ref_vertices=n_ref,
        matched=len(pairs),
        matched_c_iou=matched,
        polis_pairs=len(pol_pairs),
        polis=pol,
        mta_polygons=mta_n,
        mta=mta_sum,
    )
