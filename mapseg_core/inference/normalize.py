"""Pure input normalization: raw raster values -> the range the model was trained on.

The scaling is computed **once per raster** from a sample of its valid pixels
(overviews when the file has them, a grid of windows otherwise), never per
tile: a per-tile stretch makes a roof's colour depend on its neighbours, so
the same building gets different probabilities in two tiles and a seam
appears where they meet. Nodata pixels are left out of the statistics.

Rules, for a model whose metadata says ``{"kind": "range", "min": lo, "max": hi}``:

* ``uint8`` input and a model taking 0..255: values pass through unchanged
  (the imagery models are trained on is 8-bit; stretching it would change
  the colours the model learned).
* any other dtype (``uint16``, ``int16``, float), or ``mode="percentile"``:
  each band is stretched linearly so that its 2nd..98th percentile maps to
  ``lo..hi`` and clipped (dividing 16-bit data by 255, as some tools do,
  saturates almost every pixel).
* ``mode="none"``: values pass through unchanged, whatever the dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

NormalizationMode = Literal["auto", "percentile", "none"]


@dataclass(frozen=True)
class BandScaling:
    """A per-band linear map ``out = clip((x - low) * scale + out_min, out_min, out_max)``."""

    # "identity" (values pass through) or "percentile" (linear stretch per band).
    kind: Literal["identity", "percentile"]
    # Per band: raw value mapped to out_min.
    low: tuple[float, ...]
    # Per band: raw value mapped to out_max.
    high: tuple[float, ...]
    # Lower end of the model's input range.
    out_min: float = 0.0
    # Upper end of the model's input range.
    out_max: float = 255.0
    # Percentiles used for low/high (for the record).
    percentiles: tuple[float, float] = (2.0, 98.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record for the output's provenance metadata."""
        return {
            "kind": self.kind,
            "low": list(self.low),
            "high": list(self.high),
            "out_min": self.out_min,
            "out_max": self.out_max,
            "percentiles": list(self.percentiles),
        }


def model_range(normalization: dict[str, Any]) -> tuple[float, float]:
    """The model's input range from its metadata (``range`` kind; default 0..255)."""
    return float(normalization.get("min", 0.0)), float(normalization.get("max", 255.0))


def choose_scaling(
    dtype: str,
    bands: int,
    normalization: dict[str, Any],
    sample: NDArray[Any] | None,
    mode: NormalizationMode = "auto",
    percentiles: tuple[float, float] = (2.0, 98.0),
) -> BandScaling:
    """Pick the scaling for a raster (rules in the module docstring).

    Args:
        dtype: raster data type name (``"uint8"``, ``"uint16"``, ...).
        bands: number of bands fed to the model.
        normalization: the model's ``normalization`` metadata.
        sample: valid pixels ``(n, bands)``; only needed for a percentile stretch.
        mode: ``auto``, ``percentile`` or ``none``.
        percentiles: low and high percentile of the stretch.
    """
    lo, hi = model_range(normalization)
    identity = BandScaling("identity", (lo,) * bands, (hi,) * bands, lo, hi, percentiles)
    if mode == "none":
        return identity
    if mode == "auto" and dtype == "uint8" and (lo, hi) == (0.0, 255.0):
        return identity
    if sample is None or len(sample) == 0:
        return identity
    low = np.percentile(sample, percentiles[0], axis=0)
    high = np.percentile(sample, percentiles[1], axis=0)
    high = np.where(high > low, high, low + 1.0)  # a flat band maps to out_min, not NaN
    return BandScaling(
        "percentile",
        tuple(float(v) for v in low),
        tuple(float(v) for v in high),
        lo,
        hi,
        percentiles,
    )


def apply_scaling(data: NDArray[Any], scaling: BandScaling) -> NDArray[np.float32]:
    """Scale band-last pixels ``(..., bands)`` to the model's range, as float32."""
    x = np.asarray(data, dtype=np.float32)
    if scaling.kind == "identity":
        return x
    low = np.asarray(scaling.low, dtype=np.float32)
    high = np.asarray(scaling.high, dtype=np.float32)
    scale = (scaling.out_max - scaling.out_min) / (high - low)
    out = (x - low) * scale + np.float32(scaling.out_min)
    return np.clip(out, scaling.out_min, scaling.out_max, out=out)
