"""Planning one raster before its blocks run: bands, nodata rule, normalization, grids.

:func:`plan_raster` opens the raster once, decides everything that is fixed for
all its blocks and returns it as a frozen :class:`RasterPlan`, which block
workers (threads, job directories, Dask) receive as it is.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags

from mapseg_core.config import TileConfig
from mapseg_core.errors import ConfigError, RasterError
from mapseg_core.inference.normalize import BandScaling, choose_scaling
from mapseg_core.inference.reader import sample_pixels
from mapseg_core.inference.windows import WindowGrid, make_grid
from mapseg_core.raster import (
    check_orientation,
    ground_scale,
    non_finite_note,
    open_raster,
    parse_crs,
    pixel_ground_size,
    raster_gsd,
    working_grid,
)
from mapseg_core.vectorize.polish import pixel_area
from mapseg_core.vectorize.separate import SEPARATING, SeparationOptions


def choose_bands(
    colorinterp: Sequence[str],
    model_bands: int,
    band_names: Sequence[str],
    requested: Sequence[int] | None,
) -> tuple[tuple[int, ...], list[str]]:
    """Raster bands (1-based) to feed the model, in model order, and warnings.

    Rules, first match wins:

    1. ``requested`` (``--bands``): used as given; its length must be the model's band count.
    2. Every model band name (``red``, ``green``, ``blue``, ``nir``...) is a colour
       interpretation of the raster: those bands, in the model's order. This is what
       picks RGB out of RGBA or RGBN files whose bands are labelled.
    3. The raster has exactly as many non-alpha bands as the model: bands 1..n.
    4. One non-alpha band and a multi-band model: that band repeated (grey imagery
       into an RGB model, with a warning: accuracy will suffer).
    5. Otherwise the bands are ambiguous: :class:`RasterError` asking for ``--bands``.

    Raises:
        RasterError: no rule applies, or requested bands do not exist.
    """
    count = len(colorinterp)
    names = [c.lower() for c in colorinterp]
    if requested:
        if len(requested) != model_bands:
            raise RasterError(
                f"--bands lists {len(requested)} bands but the model takes {model_bands} "
                f"({', '.join(band_names)}); list {model_bands} band numbers"
            )
        bad = [b for b in requested if not 1 <= b <= count]
        if bad:
            raise RasterError(
                f"band(s) {bad} do not exist in a {count}-band raster; "
                f"pass --bands within 1..{count}"
            )
        return tuple(requested), []
    wanted = [n.lower() for n in band_names][:model_bands]
    if len(wanted) == model_bands and all(n in names for n in wanted):
        return tuple(names.index(n) + 1 for n in wanted), []
    data_bands = [k + 1 for k, n in enumerate(names) if n != "alpha"]
    if len(data_bands) == model_bands:
        return tuple(data_bands), []
    if len(data_bands) == 1 and model_bands > 1:
        return (data_bands[0],) * model_bands, [
            f"single-band raster fed to a {model_bands}-band model by repeating band "
            f"{data_bands[0]}; results on grey imagery are less reliable"
        ]
    raise RasterError(
        f"raster has {count} bands ({', '.join(names)}) but the model takes {model_bands} "
        f"({', '.join(band_names)}); pass --bands e.g. --bands "
        + ",".join(str(k + 1) for k in range(model_bands))
    )


def model_channels(
    metadata: dict[str, Any], separate: bool | None
) -> tuple[tuple[str, ...], SeparationOptions | None]:
    """The model's output channels and the separation to run (``--separate``).

    ``separate=None`` separates exactly when the model predicts a contact or
    boundary channel; True on a one-channel model is refused, since there is
    nothing to separate with.

    Raises:
        ConfigError: ``--separate`` with a model without separating channels,
            or metadata naming an unknown channel.
    """
    from mapseg_core.vectorize.separate import CHANNELS

    channels = tuple(str(c) for c in metadata.get("channels") or ("building",))
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown or channels[0] != "building":
        raise ConfigError(
            f"model channels {list(channels)} are not understood (expected 'building' first, "
            f"then any of {list(CHANNELS[1:])}); upgrade mapseg or re-export the model"
        )
    can = any(c in SEPARATING for c in channels)
    if separate and not can:
        raise ConfigError(
            "--separate needs a model with a contact or boundary channel; "
            "train one with --channels building,contact or drop --separate"
        )
    if not can or separate is False:
        return channels, None
    options = dict(metadata.get("separation") or {})
    return channels, SeparationOptions(
        radius=int(options.get("radius", SeparationOptions.radius)),
        threshold=float(options.get("threshold", SeparationOptions.threshold)),
    )


@dataclass(frozen=True)
class RasterPlan:
    """Everything fixed about one raster before its blocks run."""

    # Path of the raster.
    path: str
    # Value of the ``source`` attribute (the file name).
    name: str
    # CRS of the raster (or the assumed one) as WKT; the polygons' CRS.
    crs_wkt: str
    # 1-based raster bands fed to the model, in model order (may repeat for grey input).
    bands: tuple[int, ...]
    # Value that marks nodata (all selected bands equal to it), or None.
    nodata: float | None
    # Use GDAL's mask (declared nodata, alpha or internal mask) for validity.
    use_gdal_mask: bool
    # Band holding alpha, if any (0: none); used when the nodata value is overridden.
    alpha_band: int
    # How raw values are scaled to the model's input range.
    scaling: BandScaling
    # Raster grid: transform, width, height.
    src_transform: Affine
    # Raster width in pixels.
    src_width: int
    # Raster height in pixels.
    src_height: int
    # Working grid the model runs on (equal to the raster grid unless resampled).
    transform: Affine
    # Working grid width.
    width: int
    # Working grid height.
    height: int
    # Ground metres per CRS unit (x, y) at the raster's centre (polygons use their own place's).
    metres: tuple[float, float]
    # Ground resolution of the raster in metres, at its centre.
    gsd: float
    # Ground resolution the model runs at in metres.
    work_gsd: float
    # Blocks and model windows.
    grid: WindowGrid
    # Probability threshold.
    threshold: float
    # "logits" or "probabilities".
    output: str
    # The model's output channels, "building" first (e.g. "contact": see separate.py).
    channels: tuple[str, ...] = ("building",)
    # Separation of touching buildings (None: buildings are connected components).
    separation: SeparationOptions | None = None
    # Average each model input's prediction over flips and 90-degree rotations.
    tta: bool = False

    @property
    def resampled(self) -> bool:
        """True when the model runs on a resampled grid."""
        return (self.width, self.height) != (self.src_width, self.src_height)

    @property
    def crs(self) -> CRS:
        """The plan's CRS as a rasterio CRS."""
        return CRS.from_wkt(self.crs_wkt)

    def record(self) -> dict[str, Any]:
        """JSON-ready summary for metadata and the run summary."""
        return {
            "raster": self.path,
            "bands": list(self.bands),
            "nodata": self.nodata,
            "normalization": self.scaling.to_dict(),
            "gsd_m": round(self.gsd, 4),
            "model_gsd_m": round(self.work_gsd, 4),
            "resampled": self.resampled,
            "blocks": len(self.grid),
            "channels": list(self.channels),
            "separation": dataclasses.asdict(self.separation) if self.separation else None,
            "tta": self.tta,
            "margin": self.grid.margin,
        }


def _model_options(
    metadata: dict[str, Any], config: TileConfig
) -> tuple[float | None, tuple[int, int], int, float]:
    """Working GSD (None: native), model input, window margin and threshold: option or model's."""
    if config.gsd == "native":
        target: float | None = None
    else:
        target = float(config.gsd) if config.gsd is not None else float(metadata["gsd"])
    rows, cols = (int(v) for v in metadata["input_size"])
    margin = config.overlap if config.overlap is not None else int(metadata["receptive_margin"])
    threshold = config.threshold if config.threshold is not None else float(metadata["threshold"])
    return target, (rows, cols), margin, threshold


def plan_raster(
    path: str | os.PathLike[str], metadata: dict[str, Any], config: TileConfig
) -> tuple[RasterPlan, list[str]]:
    """Inspect a raster and fix how it will be processed; returns the plan and warnings.

    Raises:
        InputFileNotFound: the file does not exist.
        RasterError: not a raster, no CRS (and no ``assume_crs``), unusable bands.
    """
    path = str(path)
    notes: list[str] = []
    with open_raster(path) as src:
        crs = _raster_crs(src.crs, path, config)
        if src.transform.is_identity:
            notes.append(f"{Path(path).name} has no geotransform; pixel coordinates are used")
        check_orientation(src.transform, path)
        colorinterp = [ci.name for ci in src.colorinterp]
        bands, band_notes = choose_bands(
            colorinterp,
            int(metadata["bands"]),
            list(metadata.get("band_names") or []),
            config.bands,
        )
        notes += band_notes
        alpha = next((k + 1 for k, c in enumerate(src.colorinterp) if c == ColorInterp.alpha), 0)
        nodata, use_gdal_mask = _nodata_choice(src, bands, alpha, config)
        notes += _nodata_notes(src, path, config)
        gsd, metres, ground_notes = _ground(src, crs, path, config)
        notes += ground_notes
        target, tile, margin, threshold = _model_options(metadata, config)
        transform, width, height = working_grid(
            src.transform,
            src.width,
            src.height,
            pixel_ground_size(src.transform, *metres),
            target,
            config.gsd_tolerance,
        )
        grid = make_grid(height, width, tile, margin, config.block_size, config.align)
        channels, separation = model_channels(metadata, config.separate)
        provisional = RasterPlan(
            path=path,
            name=Path(path).name,
            crs_wkt=crs.to_wkt(),
            bands=bands,
            nodata=nodata,
            use_gdal_mask=use_gdal_mask,
            alpha_band=alpha,
            scaling=choose_scaling("uint8", len(bands), {"min": 0, "max": 255}, None, "none"),
            src_transform=src.transform,
            src_width=src.width,
            src_height=src.height,
            transform=transform,
            width=width,
            height=height,
            metres=metres,
            gsd=gsd,
            work_gsd=target if target is not None and transform != src.transform else gsd,
            grid=grid,
            threshold=threshold,
            output=str(metadata.get("output", "logits")),
            channels=channels,
            separation=separation,
            tta=config.tta,
        )
        dtype = src.dtypes[bands[0] - 1]
        sample, stat_notes = _statistics(src, provisional, dtype, config)
        notes += stat_notes
    scaling = choose_scaling(
        dtype,
        len(bands),
        dict(metadata.get("normalization") or {}),
        sample,
        config.normalization,
        config.percentiles,
    )
    return dataclasses.replace(provisional, scaling=scaling), notes


def _raster_crs(crs: Any, path: str, config: TileConfig) -> Any:
    """The raster's CRS, or ``--assume-crs`` for a raster without one."""
    if crs is None or not crs.to_wkt():
        if not config.assume_crs:
            raise RasterError(
                f"raster {path} has no CRS; pass --assume-crs EPSG:XXXX or georeference it"
            )
        crs = parse_crs(config.assume_crs, "--assume-crs")
    return crs


def _nodata_choice(
    src: Any, bands: tuple[int, ...], alpha: int, config: TileConfig
) -> tuple[float | None, bool]:
    """Nodata value and whether GDAL's mask (or alpha) says which pixels are valid."""
    if config.nodata == "none":
        return None, False
    if config.nodata is not None:
        return float(config.nodata), False
    flags = src.mask_flag_enums[bands[0] - 1]
    return src.nodata, MaskFlags.all_valid not in flags or alpha > 0


def _nodata_notes(src: Any, path: str, config: TileConfig) -> list[str]:
    """A warning when a uint8 raster's nodata is also a colour its buildings can have."""
    if src.nodata is not None and config.nodata is None and src.dtypes[0] == "uint8":
        if src.nodata in (0.0, 255.0):
            return [
                f"{Path(path).name} declares nodata={src.nodata:g}, also a valid colour "
                f"(white roofs at 255); pixels equal to it in all bands are skipped. "
                "Pass --nodata none to use them"
            ]
    return []


def _ground(
    src: Any, crs: Any, path: str, config: TileConfig
) -> tuple[float, tuple[float, float], list[str]]:
    """Ground resolution (m), metres per CRS unit at the centre, and a varying-scale warning."""
    gsd, gsd_min, gsd_max = raster_gsd(crs, src.transform, src.width, src.height)
    centre = src.transform @ (src.width / 2, src.height / 2)
    px_units = math.sqrt(pixel_area(src.transform))
    at_centre = ground_scale(crs, centre[0], centre[1], 8 * px_units)
    metres = (float(at_centre.x), float(at_centre.y))
    notes = []
    if gsd_max / gsd_min - 1.0 > config.gsd_tolerance:
        notes.append(
            f"{Path(path).name}: its CRS's scale varies across it (ground resolution "
            f"{gsd_min:.3g}..{gsd_max:.3g} m); the model runs at the centre's everywhere, "
            "areas are measured where each building is. For even accuracy, warp it to a "
            "local projected CRS (gdalwarp -t_srs EPSG:<UTM zone>)"
        )
    return gsd, metres, notes


def _statistics(
    src: Any, provisional: RasterPlan, dtype: str, config: TileConfig
) -> tuple[NDArray[Any] | None, list[str]]:
    """The pixel sample for percentile scaling (when needed) and NaN/inf warnings."""
    needs_stats = config.normalization == "percentile" or (
        config.normalization == "auto" and dtype != "uint8"
    )
    sample: NDArray[Any] | None = None
    read: NDArray[Any] | None = None
    notes = []
    if needs_stats:
        sample, read = sample_pixels(src, provisional)
        if len(sample) == 0:
            notes.append(f"{provisional.name}: no valid pixel in the statistics sample")
    elif np.dtype(dtype).kind == "f":
        read = sample_pixels(src, provisional)[1]
    note = non_finite_note(provisional.name, read) if read is not None else None
    if note:
        notes.append(note)
    return sample, notes


__all__ = ["RasterPlan", "choose_bands", "model_channels", "plan_raster"]
