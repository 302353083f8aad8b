"""A prediction layer against a reference layer: reprojection, extent, filter, histogram."""

from __future__ import annotations

import geopandas as gpd
import pytest
from PIL import Image
from rasters import CRS
from shapely.geometry import box

from mapseg_core.errors import InputError
from mapseg_core.evaluation.vectors import evaluate_vectors, plot_iou_histogram

X, Y = 500000.0, 5000000.0


def _layers(tmp_path):
    refs = [box(X + 20 * k, Y, X + 20 * k + 10, Y + 10) for k in range(4)]
    kinds = ["Building"] * 4 + ["Road"]
    refs_all = [*refs, box(X, Y + 30, X + 80, Y + 34)]
    preds = [
        box(X, Y, X + 10, Y + 10),  # exact
        box(X + 20, Y, X + 30, Y + 7),  # IoU 0.7
        box(X + 40, Y, X + 50, Y + 3),  # IoU 0.3
    ]
    ref_path = tmp_path / "ref.gpkg"
    gpd.GeoDataFrame({"Niveau_2": kinds}, geometry=refs_all, crs=CRS).to_crs("EPSG:4326").to_file(
        ref_path
    )
    pred_path = tmp_path / "pred.gpkg"
    gpd.GeoDataFrame(geometry=preds, crs=CRS).to_file(pred_path)
    return pred_path, ref_path


def test_scores_against_a_filtered_reprojected_reference(tmp_path):
    pred, ref = _layers(tmp_path)
    result = evaluate_vectors(
        pred, ref, ref_where="Niveau_2 = 'Building'", aoi=f"{X - 5},{Y - 5},{X + 100},{Y + 40}"
    )
    m = result.match
    assert (m.tp, m.fp, m.fn) == (2, 1, 2)
    assert m.f1 == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert result.union_iou == pytest.approx((100 + 70 + 30) / 400, rel=1e-5)
    assert result.crs == "EPSG:32633"
    png = plot_iou_histogram(result, tmp_path / "iou.png")
    assert Image.open(png).format == "PNG"


def test_common_extent_drops_references_beyond_the_predictions(tmp_path):
    pred, ref = _layers(tmp_path)
    result = evaluate_vectors(pred, ref, ref_where="Niveau_2 = 'Building'")
    # Predictions span x 0..50: the fourth reference (x 60..70) is outside.
    assert result.reference == 3 and result.match.fn == 1


def test_layers_that_do_not_overlap(tmp_path):
    pred, _ = _layers(tmp_path)
    far = tmp_path / "far.gpkg"
    gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs=CRS).to_file(far)
    with pytest.raises(InputError, match="do not overlap"):
        evaluate_vectors(pred, far)
