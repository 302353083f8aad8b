"""Normalization: one scaling per raster, identity for 8-bit, percentile stretch otherwise."""

from __future__ import annotations

import numpy as np

from mapseg_core.inference.normalize import apply_scaling, choose_scaling

MODEL = {"kind": "range", "min": 0, "max": 255}


def test_uint8_passes_through():
    s = choose_scaling("uint8", 3, MODEL, None)
    assert s.kind == "identity"
    x = np.array([[[0, 128, 255]]], dtype=np.uint8)
    np.testing.assert_array_equal(apply_scaling(x, s), x.astype(np.float32))


def test_uint16_is_stretched_by_percentiles_not_divided_by_255():
    rng = np.random.default_rng(0)
    sample = rng.integers(1000, 3000, size=(10000, 3)).astype(np.uint16)
    s = choose_scaling("uint16", 3, MODEL, sample)
    assert s.kind == "percentile"
    assert 1000 <= s.low[0] < 1100 and 2900 < s.high[0] <= 3000
    out = apply_scaling(np.array([[[1000, 2000, 3000]]], dtype=np.uint16), s)
    assert out.min() >= 0 and out.max() <= 255
    assert 100 < out[0, 0, 1] < 155


def test_flat_band_does_not_divide_by_zero():
    s = choose_scaling("float32", 1, MODEL, np.full((10, 1), 7.0))
    assert np.isfinite(apply_scaling(np.full((2, 2, 1), 7.0), s)).all()


def test_modes():
    sample = np.array([[0, 0, 0], [255, 255, 255]], dtype=np.uint8)
    assert choose_scaling("uint8", 3, MODEL, sample, mode="percentile").kind == "percentile"
    assert choose_scaling("uint16", 3, MODEL, sample, mode="none").kind == "identity"
    assert choose_scaling("uint16", 3, MODEL, None).kind == "identity"  # nothing valid to measure
