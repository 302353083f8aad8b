"""Tiled inference over rasters: the only inference module that opens rasters.

:func:`tile_infer` is the one function behind ``mapseg tile-infer``, the QGIS
plugin and (later) a Dask cluster. Its steps:

1. **Check** the output (exists? writable?), the model file's metadata and
   every raster (readable, CRS, bands) before any heavy work, so a bad input
   fails in a second with a one-line message and leaves nothing behind.
2. **Plan** each raster (:class:`RasterPlan`): bands, nodata rule, one
   normalization from a sample of valid pixels, working grid at the model's
   GSD, block and window grid.
3. **Blocks** (:func:`run_block`, a pure-enough function of an open dataset,
   a plan, a block, a predictor and the config that a Dask worker can call):
   windowed read -> normalize -> pad -> model windows -> batched predict ->
   centre crop -> building mask -> polygons split into complete buildings and
   border pieces. A model that takes inputs of any size predicts a block as a
   few large spans instead of many model-sized windows (same crop rule, far
   less overlap; see :meth:`~mapseg_core.inference.windows.WindowGrid.spans_of`).
4. **Merge** border pieces (:class:`~mapseg_core.vectorize.polygons.BorderMerger`,
   any completion order), polish (min area, simplify, regularize) and stream
   the features into an atomic GeoPackage.

Within a raster the three stages of consecutive blocks overlap (a reader
thread, the model in the calling thread, a vectorize/write thread), so reads
and polygons cost little wall time on top of the model. Memory is bounded by
three blocks (plus margins) and the buildings waiting on unfinished block
borders; the raster is never read whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import rasterio.errors
import shapely
from affine import Affine
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from shapely.geometry import Polygon

from mapseg_core import __version__
from mapseg_core.atomic import check_output, commit_all
from mapseg_core.config import TileConfig
from mapseg_core.errors import ConfigError, RasterError
from mapseg_core.inference.normalize import BandScaling, apply_scaling, choose_scaling
from mapseg_core.inference.stitch import assemble_cores, pad_block, split_windows, to_probability
from mapseg_core.inference.windows import Block, WindowGrid, make_grid
from mapseg_core.models.artifact import file_sha256, load_artifact, read_metadata
from mapseg_core.progress import Reporter, null_reporter, progress_event
from mapseg_core.raster import (
    GroundScale,
    check_orientation,
    ground_scale,
    non_finite_note,
    open_raster,
    parse_crs,
    pixel_ground_size,
    raster_gsd,
    statistics_sample,
    value_valid,
)
from mapseg_core.vectorize.gpkg import GpkgWriter, temporary_sibling
from mapseg_core.vectorize.pipeline import block_buildings, model_polish
from mapseg_core.vectorize.pipeline import polish_options as outline_options
from mapseg_core.vectorize.polygons import (
    BlockPolygons,
    BorderMerger,
    Building,
    PolishOptions,
    mean_score,
    pixel_area,
    polish,
)
from mapseg_core.vectorize.separate import SEPARATING, SeparationOptions, halo

#: GDAL block cache while tiling. GDAL's default (5 % of RAM) would keep every decoded
#: block of a big raster; blocks are read once in row order, so a cache that holds the
#: rows the next block row re-reads (its top margin) is all that helps.
GDAL_CACHE_BYTES = 64 * 2**20

# === Pure helpers (no I/O) ===


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


def metres_per_unit(crs: CRS, latitude: float) -> tuple[float, float]:
    """Metres per CRS unit along x and y at ``latitude`` (degrees), by the CRS's unit only.

    Kept for callers that have no coordinates; tiling measures the projection's
    own scale where the pixels are (:func:`mapseg_core.raster.ground_scale`),
    which this ignores for projected CRSs (Web Mercator's 1/cos(latitude)).

    Projected CRSs: the linear unit's factor (1 for metres, 0.3048 for feet).
    Geographic CRSs: the length of one degree of longitude and latitude on
    the WGS84 ellipsoid at that latitude (series expansion, < 1 cm/degree error),
    which is how metre-based options (GSD, min area, simplify) are converted
    for rasters in degrees.
    """
    if crs.is_geographic:
        phi = math.radians(latitude)
        m_lat = 111132.92 - 559.82 * math.cos(2 * phi) + 1.175 * math.cos(4 * phi)
        m_lon = 111412.84 * math.cos(phi) - 93.5 * math.cos(3 * phi)
        return (abs(m_lon), m_lat)
    try:
        factor = float(crs.linear_units_factor[1])
    except Exception:  # CRSs without a linear unit: assume metres
        factor = 1.0
    return (factor, factor)


def working_grid(
    transform: Affine,
    width: int,
    height: int,
    raster_gsd: float | tuple[float, float],
    target_gsd: float | None,
    tolerance: float,
) -> tuple[Affine, int, int]:
    """Grid the model runs on: the raster's own, or resampled to ``target_gsd``.

    ``raster_gsd`` is the ground size of a pixel in metres, or its two sizes
    (along columns, along rows: see :func:`mapseg_core.raster.pixel_ground_size`),
    which differ for rasters in degrees; each axis is then resampled by its own
    factor so the model sees square ground pixels. A raster within
    ``tolerance`` of the target on both axes (or ``target_gsd=None``) is used
    as it is: resampling costs time and blurs edges for no gain.
    """
    gsd_x, gsd_y = raster_gsd if isinstance(raster_gsd, tuple) else (raster_gsd, raster_gsd)
    if target_gsd is None or all(abs(g / target_gsd - 1.0) <= tolerance for g in (gsd_x, gsd_y)):
        return transform, width, height
    new_w = max(1, round(width * gsd_x / target_gsd))
    new_h = max(1, round(height * gsd_y / target_gsd))
    return transform @ Affine.scale(width / new_w, height / new_h), new_w, new_h


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


# === Plans ===


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


@dataclass(frozen=True)
class BlockResult:
    """What one block produces."""

    # The block.
    block: Block
    # Its polygons: complete buildings and border pieces.
    polygons: BlockPolygons
    # Probabilities of the block's pixels (kept only when a probability/mask file is written).
    probability: NDArray[np.float32] | None
    # Pixels of the block that hold data.
    valid_pixels: int


class Predictor:
    """A loaded model and how to call it: batched, numpy in and out."""

    def __init__(
        self,
        model: Any,
        metadata: dict[str, Any],
        batch_size: int,
        any_size: bool | None = None,
    ):
        """Args:
        model: a Keras model mapping ``(n, h, w, bands)`` float32 to ``(n, h, w, 1)``.
        metadata: the model file's metadata.
        batch_size: windows per ``predict_on_batch`` call.
        any_size: the model takes inputs of any size, so blocks are predicted as
            spans (see :meth:`~mapseg_core.inference.windows.WindowGrid.spans_of`);
            None: True when the model's input has no fixed height and width.
        """
        self.model = model
        self.metadata = metadata
        self.batch_size = batch_size
        if any_size is None:
            any_size = _takes_any_size(model)
        self.any_size = any_size

    def __call__(self, windows: NDArray[np.float32]) -> NDArray[np.float32]:
        """Raw model output ``(n, h, w)`` of the first (building) channel for ``windows``."""
        return self.raw(windows)[..., 0]

    def raw(self, windows: NDArray[np.float32]) -> NDArray[np.float32]:
        """Raw model output ``(n, h, w, channels)`` for ``windows``, in batches."""
        out: NDArray[np.float32] | None = None
        for start in range(0, len(windows), self.batch_size):
            batch = windows[start : start + self.batch_size]
            pred = np.asarray(self.model.predict_on_batch(batch), dtype=np.float32)
            pred = pred.reshape(*pred.shape[:3], -1)
            if out is None:
                out = np.empty((len(windows), *pred.shape[1:]), dtype=np.float32)
            out[start : start + len(batch)] = pred
        if out is None:
            return np.empty((*windows.shape[:3], 1), dtype=np.float32)
        return out

    def probabilities(
        self, windows: NDArray[np.float32], kind: Literal["logits", "probabilities"], tta: bool
    ) -> NDArray[np.float32]:
        """Probabilities ``(n, h, w, channels)`` of ``windows``, optionally with TTA.

        Test-time augmentation predicts each input under the 8 flips and
        90-degree rotations of the square (4 flips for non-square inputs, whose
        rotations would change the shape a fixed-size model takes), turns each
        prediction back and averages the probabilities. It acts on one model
        input at a time, a window or a span, so a pixel's value still comes from
        exactly one window centre and does not depend on the block layout.
        """
        if not tta:
            return to_probability(self.raw(windows), kind)
        square = windows.shape[1] == windows.shape[2]
        total: NDArray[np.float32] | None = None
        transforms = [(k, f) for k in ((0, 1, 2, 3) if square else (0, 2)) for f in (False, True)]
        for k, flip in transforms:
            x = np.rot90(windows, k, axes=(1, 2))
            x = x[:, :, ::-1] if flip else x
            y = to_probability(self.raw(np.ascontiguousarray(x)), kind)
            y = y[:, :, ::-1] if flip else y
            y = np.rot90(y, -k, axes=(1, 2))
            total = y.copy() if total is None else total + y
        assert total is not None
        return (total / len(transforms)).astype(np.float32)


def _takes_any_size(model: Any) -> bool:
    """True for a Keras model whose (first) input has no fixed height and width."""
    try:
        shape = tuple(model.inputs[0].shape)
    except (AttributeError, IndexError, TypeError):
        return False
    return len(shape) == 4 and shape[1] is None and shape[2] is None


# === Raster I/O ===


def polish_options(plan: RasterPlan, config: TileConfig) -> PolishOptions:
    """Min area, simplification and regularization in ground metres.

    ``config`` should have gone through :func:`~mapseg_core.vectorize.pipeline.model_polish`
    (unset options from the model); the simplification tolerance defaults to
    ``simplify_px`` pixels of the coarser of the raster's and the model's GSD.
    ``metres_per_unit`` is the raster centre's ground scale: each building is
    polished with the scale where it is (:func:`polish_on_ground`).
    """
    return outline_options(
        {
            "outline": config.outline or ("clean" if config.regularize else None),
            "simplify": config.simplify,
            "simplify_px": config.simplify_px,
            "min_area": config.min_area,
        },
        plan.metres,
        max(plan.gsd, plan.work_gsd),
    )


def building_scales(buildings: Sequence[Building], plan: RasterPlan) -> GroundScale:
    """Ground metres per CRS unit at the centre of each building (one vectorized measure).

    A building is at most a few hundred metres across, so the scale at its
    centre is its scale to ~1e-5 even in Web Mercator; a raster's scale is not
    (a degree mosaic or a Mercator raster spanning a few degrees of latitude).
    """
    if not buildings:
        return GroundScale(*(np.empty(0),) * 3)
    bounds = shapely.bounds([b.geometry for b in buildings])
    cols = (bounds[:, 0] + bounds[:, 2]) / 2
    rows = (bounds[:, 1] + bounds[:, 3]) / 2
    t = plan.transform
    xs = t.a * cols + t.b * rows + t.c
    ys = t.d * cols + t.e * rows + t.f
    step = 8 * math.sqrt(pixel_area(t))
    return ground_scale(plan.crs, xs, ys, step, fallback=_fallback_metres(plan))


def _fallback_metres(plan: RasterPlan) -> float:
    return math.sqrt(plan.metres[0] * plan.metres[1])


def polish_on_ground(
    building: Building,
    transform: Affine,
    scale: tuple[float, float, float],
    options: PolishOptions,
) -> list[tuple[Polygon, float]]:
    """A building's polished parts in CRS coordinates, each with its ground area in m².

    ``scale`` is ``(x, y, area)`` ground metres per CRS unit at the building
    (:func:`building_scales`); it replaces ``options.metres_per_unit``, so min
    area, the simplification tolerance and the reported area are in ground
    metres whatever the CRS, and outline cleaning runs in a metric frame around
    the building (:func:`~mapseg_core.vectorize.regularize.clean_outline`):
    regularized corners are right angles on the ground, not in degrees (a degree
    of longitude is cos(latitude) of one of latitude).
    """
    mx, my, m2 = scale
    local = dataclasses.replace(options, metres_per_unit=(mx, my))
    parts, _ = polish(building, transform, pixel_area(transform) * m2, local)
    return [(p, p.area * m2) for p in parts]


@contextlib.contextmanager
def open_working(plan: RasterPlan) -> Iterator[Any]:
    """The raster as the model sees it: the file itself or a resampling VRT."""
    with open_raster(plan.path) as src:
        if not plan.resampled:
            yield src
            return
        kwargs: dict[str, Any] = {
            "crs": plan.crs,
            "transform": plan.transform,
            "width": plan.width,
            "height": plan.height,
            "resampling": Resampling.bilinear,
        }
        if src.crs is None:
            kwargs["src_crs"] = plan.crs
            kwargs["src_transform"] = src.transform
        if plan.nodata is not None and not plan.use_gdal_mask:
            kwargs["src_nodata"] = plan.nodata
            kwargs["nodata"] = plan.nodata
        elif plan.nodata is None and not plan.use_gdal_mask and _is_float(src, plan):
            # NaN as the warper's nodata: it then never blends NaN into its neighbours.
            kwargs["src_nodata"] = math.nan
            kwargs["nodata"] = math.nan
        with WarpedVRT(src, **kwargs) as vrt:
            yield vrt


def _is_float(ds: Any, plan: RasterPlan) -> bool:
    return any(np.dtype(ds.dtypes[b - 1]).kind == "f" for b in set(plan.bands))


def _valid_mask(
    ds: Any,
    plan: RasterPlan,
    data: NDArray[Any],
    window: Window | None,
    out_shape: tuple[int, int] | None = None,
) -> NDArray[np.bool_]:
    """True where a pixel holds data: the plan's nodata rule, and finite values.

    NaN and ±inf are nodata whatever the file declares (:func:`value_valid`).
    ``window`` or ``out_shape`` (a decimated read of the whole raster) says
    where ``data`` came from.
    """
    read = {"window": window} if window is not None else {"out_shape": out_shape}
    if plan.use_gdal_mask:
        unique = sorted(set(plan.bands))
        if out_shape is not None:
            read = {"out_shape": (len(unique), *out_shape)}
        masks = ds.read_masks(unique, **read)
        return np.asarray(masks.any(axis=0)) & value_valid(data, None)
    valid = value_valid(data, plan.nodata)
    if plan.alpha_band:
        valid &= ds.read(plan.alpha_band, **read) > 0
    return valid


def _read(ds: Any, plan: RasterPlan, window: Window) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """Band-last pixels of ``window`` in model band order, and their validity."""
    unique = sorted(set(plan.bands))
    raw = ds.read(unique, window=window)
    order = [unique.index(b) for b in plan.bands]
    data = np.moveaxis(raw[order], 0, -1)
    return data, _valid_mask(ds, plan, data, window)


def _sample(ds: Any, plan: RasterPlan) -> tuple[NDArray[Any], NDArray[Any]]:
    """Valid pixels ``(n, bands)`` for the normalization statistics, and all pixels read.

    :func:`mapseg_core.raster.statistics_sample` (shared with chips) with the
    plan's nodata rule; never the whole raster.
    """
    return statistics_sample(
        ds,
        plan.bands,
        lambda data, window, shape: _valid_mask(ds, plan, data, window, shape),
    )


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
        crs = src.crs
        if crs is None or not crs.to_wkt():
            if not config.assume_crs:
                raise RasterError(
                    f"raster {path} has no CRS; pass --assume-crs EPSG:XXXX or georeference it"
                )
            crs = parse_crs(config.assume_crs, "--assume-crs")
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
        if config.nodata == "none":
            nodata, use_gdal_mask = None, False
        elif config.nodata is not None:
            nodata, use_gdal_mask = float(config.nodata), False
        else:
            nodata = src.nodata
            flags = src.mask_flag_enums[bands[0] - 1]
            use_gdal_mask = MaskFlags.all_valid not in flags or alpha > 0
        if src.nodata is not None and config.nodata is None and src.dtypes[0] == "uint8":
            if src.nodata in (0.0, 255.0):
                notes.append(
                    f"{Path(path).name} declares nodata={src.nodata:g}, also a valid colour "
                    f"(white roofs at 255); pixels equal to it in all bands are skipped. "
                    "Pass --nodata none to use them"
                )
        gsd, gsd_min, gsd_max = raster_gsd(crs, src.transform, src.width, src.height)
        centre = src.transform @ (src.width / 2, src.height / 2)
        px_units = math.sqrt(pixel_area(src.transform))
        at_centre = ground_scale(crs, centre[0], centre[1], 8 * px_units)
        metres = (float(at_centre.x), float(at_centre.y))
        if gsd_max / gsd_min - 1.0 > config.gsd_tolerance:
            notes.append(
                f"{Path(path).name}: its CRS's scale varies across it (ground resolution "
                f"{gsd_min:.3g}..{gsd_max:.3g} m); the model runs at the centre's everywhere, "
                "areas are measured where each building is. For even accuracy, warp it to a "
                "local projected CRS (gdalwarp -t_srs EPSG:<UTM zone>)"
            )
        if config.gsd == "native":
            target: float | None = None
        else:
            target = float(config.gsd) if config.gsd is not None else float(metadata["gsd"])
        transform, width, height = working_grid(
            src.transform,
            src.width,
            src.height,
            pixel_ground_size(src.transform, *metres),
            target,
            config.gsd_tolerance,
        )
        tile = tuple(int(v) for v in metadata["input_size"])
        margin = config.overlap if config.overlap is not None else int(metadata["receptive_margin"])
        grid = make_grid(height, width, (tile[0], tile[1]), margin, config.block_size, config.align)
        threshold = (
            config.threshold if config.threshold is not None else float(metadata["threshold"])
        )
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
        needs_stats = config.normalization == "percentile" or (
            config.normalization == "auto" and dtype != "uint8"
        )
        sample: NDArray[Any] | None = None
        read: NDArray[Any] | None = None
        if needs_stats:
            sample, read = _sample(src, provisional)
            if len(sample) == 0:
                notes.append(f"{Path(path).name}: no valid pixel in the statistics sample")
        elif np.dtype(dtype).kind == "f":
            read = _sample(src, provisional)[1]
        note = non_finite_note(Path(path).name, read) if read is not None else None
        if note:
            notes.append(note)
    scaling = choose_scaling(
        dtype,
        len(bands),
        dict(metadata.get("normalization") or {}),
        sample,
        config.normalization,
        config.percentiles,
    )
    return dataclasses.replace(provisional, scaling=scaling), notes


# === One block ===


@dataclass
class _Prepared:
    """A block read and ready for the model (the first stage of :func:`run_block`)."""

    block: Block
    # What is predicted: the block, or the block and the halo its separation needs.
    area: Block
    # Padded, normalized block (rows, cols, bands), or None when it has no valid pixel.
    padded: NDArray[np.float32] | None
    # Validity of the padded block's pixels.
    padded_valid: NDArray[np.bool_] | None
    # Validity of the block's own pixels.
    inner: NDArray[np.bool_]
    # Pixels of the block that hold data.
    valid_pixels: int


def separation_area(plan: RasterPlan, block: Block, any_size: bool) -> Block:
    """The block plus the halo its separation needs (the block itself without separation).

    Separation labels a block's pixels from the probabilities within
    :func:`~mapseg_core.vectorize.separate.halo` pixels around it, so those
    pixels are predicted too, and must get the values the neighbouring block
    computes for them. Model-sized windows sit on the core grid, so the area
    grows by whole cores: the halo pixels are predicted by the very windows the
    neighbour runs. Spans keep the network's phase when they move by multiples
    of ``align``, so the area grows by the halo rounded up to ``align`` (a few
    percent more pixels on 1024 px blocks).
    """
    if plan.separation is None:
        return block
    need = halo(plan.separation)
    grid = plan.grid
    units = [
        grid.core[a] if not any_size else (grid.align if grid.core[a] % grid.align == 0 else 1)
        for a in (0, 1)
    ]
    ext = [-(-need // u) * u for u in units]
    r0 = max(0, block.row_off - ext[0])
    c0 = max(0, block.col_off - ext[1])
    r1 = min(grid.height, block.row_off + block.height + ext[0])
    c1 = min(grid.width, block.col_off + block.width + ext[1])
    return Block(block.index, r0, c0, r1 - r0, c1 - c0)


def _prepare(ds: Any, plan: RasterPlan, block: Block, any_size: bool = True) -> _Prepared:
    """Read, normalize and pad one block (I/O; the only stage that touches ``ds``)."""
    grid = plan.grid
    area = separation_area(plan, block, any_size)
    bw = grid.windows_of(area)
    data, valid = _read(ds, plan, bw.read)
    m = grid.margin
    (top, _), (left, _) = bw.pad
    inner = valid[m - top : m - top + area.height, m - left : m - left + area.width]
    r, c = block.row_off - area.row_off, block.col_off - area.col_off
    n_valid = int(inner[r : r + block.height, c : c + block.width].sum())
    if n_valid == 0:
        return _Prepared(block, area, None, None, inner, 0)
    x = apply_scaling(data, plan.scaling)
    x[~valid] = plan.scaling.out_min
    padded, padded_valid = pad_block(x, valid, bw.pad)
    return _Prepared(block, area, padded, padded_valid, inner, n_valid)


def _predict(plan: RasterPlan, prepared: _Prepared, predictor: Predictor) -> NDArray[np.float32]:
    """Probabilities ``(rows, cols, channels)`` of the predicted area (0 outside valid data)."""
    grid = plan.grid
    block = prepared.area
    shape = (block.height, block.width)
    channels = len(plan.channels)
    if prepared.padded is None or prepared.padded_valid is None:
        return np.zeros((*shape, channels), dtype=np.float32)
    padded, padded_valid = prepared.padded, prepared.padded_valid
    m = grid.margin
    kind: Literal["logits", "probabilities"] = (
        "logits" if plan.output == "logits" else "probabilities"
    )
    if predictor.any_size:
        prob = np.zeros((*shape, channels), dtype=np.float32)
        extra = (grid.tile[0] - grid.core[0], grid.tile[1] - grid.core[1])
        budget = max(1, predictor.batch_size) * grid.tile[0] * grid.tile[1]
        for span in grid.spans_of(block, budget):
            r, c = span.row, span.col
            h = min(span.height, shape[0] - r)
            w = min(span.width, shape[1] - c)
            if not padded_valid[r + m : r + m + h, c + m : c + m + w].any():
                continue
            x = padded[r : r + span.height + extra[0], c : c + span.width + extra[1]]
            p = predictor.probabilities(np.ascontiguousarray(x[None]), kind, plan.tta)
            prob[r : r + h, c : c + w] = p[0, m : m + h, m : m + w, :channels]
    else:
        bw = grid.windows_of(block)
        windows = split_windows(padded, bw.offsets, grid.tile)
        probs = np.zeros((*windows.shape[:3], channels), np.float32)
        core_valid = np.array(
            [
                padded_valid[r + m : r + m + grid.core[0], c + m : c + m + grid.core[1]].any()
                for r, c in bw.offsets
            ]
        )
        if core_valid.any():
            probs[core_valid] = predictor.probabilities(windows[core_valid], kind, plan.tta)[
                ..., :channels
            ]
        prob = assemble_cores(probs, bw.shape, m, grid.core, shape)
        prob = prob.reshape(*shape, channels)
    prob[~prepared.inner] = 0.0
    return prob


def _finish(
    plan: RasterPlan,
    prepared: _Prepared,
    prob: NDArray[np.float32],
    keep_probability: bool,
) -> BlockResult:
    """Threshold, separate and vectorize one predicted block (pure CPU, no model, no I/O).

    ``prob`` covers ``prepared.area``: the block, plus the separation halo when
    buildings are separated (see :func:`separation_area`).
    """
    block, area = prepared.block, prepared.area
    r, c = block.row_off - area.row_off, block.col_off - area.col_off
    separators = None
    if plan.separation is not None:
        picked = [k for k, name in enumerate(plan.channels) if name in SEPARATING]
        separators = prob[..., picked]
    polygons = block_buildings(
        prob[..., 0],
        plan.threshold,
        block.index,
        (block.row_off, block.col_off),
        plan.grid.n_blocks,
        valid=prepared.inner,
        separators=separators,
        separation=plan.separation,
        core=(r, c, block.height, block.width),
    )
    building = np.ascontiguousarray(prob[r : r + block.height, c : c + block.width, 0])
    return BlockResult(
        block, polygons, building if keep_probability else None, prepared.valid_pixels
    )


def run_block(
    ds: Any, plan: RasterPlan, block: Block, predictor: Predictor, keep_probability: bool = False
) -> BlockResult:
    """Predict and vectorize one block of an open (working) dataset.

    This is the unit of work a Dask worker runs: its inputs are an open
    dataset (see :func:`process_block` for the path-based form), the raster's
    plan, the block, and a loaded model; its output does not depend on any
    other block, and :class:`BorderMerger` accepts the results in any order.
    Its three stages (read, predict, vectorize) are what :func:`tile_infer`
    overlaps across consecutive blocks.
    """
    prepared = _prepare(ds, plan, block, predictor.any_size)
    prob = _predict(plan, prepared, predictor)
    return _finish(plan, prepared, prob, keep_probability)


def process_block(
    plan: RasterPlan, block: Block, predictor: Predictor, keep_probability: bool = False
) -> BlockResult:
    """:func:`run_block` from the raster path (opens the file; for distributed workers)."""
    with open_working(plan) as ds:
        return run_block(ds, plan, block, predictor, keep_probability)


# === Raster outputs ===


class _ProbabilitySink:
    """Writes block probabilities (or masks) to a GeoTIFF on the input grid, atomically."""

    def __init__(self, target: Path, plan: RasterPlan, kind: str):
        self.target = target
        self.plan = plan
        self.kind = kind
        self.work = temporary_sibling(target)
        # The finished temporary file (after :meth:`stage`), which :meth:`abort` also deletes.
        self.staged: Path | None = None
        profile = {
            "driver": "GTiff",
            "width": plan.width,
            "height": plan.height,
            "count": 1,
            "dtype": "uint8",
            "crs": plan.crs,
            "transform": plan.transform,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
        }
        self.ds = rasterio.open(self.work, "w", **profile)

    def write(self, result: BlockResult) -> None:
        assert result.probability is not None
        p = result.probability
        if self.kind == "mask":
            values = (p >= self.plan.threshold).astype(np.uint8)
        else:
            values = np.rint(p * 255.0).astype(np.uint8)
        self.ds.write(values, 1, window=result.block.window)

    def stage(self) -> Path:
        """Finish the file (resampled back, overviews) under its temporary name; returns it.

        It is renamed onto the target with the run's other outputs
        (:func:`mapseg_core.atomic.commit_all`), never alone.
        """
        self.ds.close()
        final = self.work
        if self.plan.resampled:
            final = temporary_sibling(self.target)
            self.staged = final
            self._resample_back(final)
            self.work.unlink()
        self.staged = final
        with rasterio.open(final, "r+") as ds:
            if self.kind == "probability":
                ds.scales = (1 / 255,)
            factors = [f for f in (2, 4, 8, 16, 32) if min(ds.width, ds.height) // f >= 64]
            if factors:
                ds.build_overviews(
                    factors,
                    Resampling.average if self.kind == "probability" else Resampling.nearest,
                )
        return final

    def _resample_back(self, final: Path) -> None:
        plan = self.plan
        profile = {
            "driver": "GTiff",
            "width": plan.src_width,
            "height": plan.src_height,
            "count": 1,
            "dtype": "uint8",
            "crs": plan.crs,
            "transform": plan.src_transform,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
        }
        resampling = Resampling.bilinear if self.kind == "probability" else Resampling.nearest
        with (
            rasterio.open(self.work) as work,
            WarpedVRT(
                work,
                crs=plan.crs,
                transform=plan.src_transform,
                width=plan.src_width,
                height=plan.src_height,
                resampling=resampling,
            ) as vrt,
            rasterio.open(final, "w", **profile) as out,
        ):
            for _, window in out.block_windows(1):
                out.write(vrt.read(1, window=window), 1, window=window)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.ds.close()
        self.work.unlink(missing_ok=True)
        if self.staged is not None:
            self.staged.unlink(missing_ok=True)


def _raster_target(option: str, raster: str, several: bool) -> Path:
    path = Path(option)
    if several:
        path = path.with_name(f"{path.stem}_{Path(raster).stem}{path.suffix or '.tif'}")
    return path


# === The public function ===


def tile_infer(
    rasters: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    model: str | os.PathLike[str],
    config: TileConfig | None = None,
    report: Reporter = null_reporter,
    loaded_model: Any = None,
) -> dict[str, Any]:
    """Detect buildings in ``rasters`` and write them to one GeoPackage layer.

    Args:
        rasters: one or more GDAL rasters (GeoTIFF); several go into one layer,
            reprojected to the first raster's CRS (or ``config.crs``).
        output: target ``.gpkg``; written atomically (temporary file + rename).
        model: a mapseg ``.keras`` model file (hashed into the provenance).
        config: options (:class:`~mapseg_core.config.TileConfig`).
        report: receives progress events (:mod:`mapseg_core.progress`).
        loaded_model: the Keras model already loaded from ``model`` (to load it
            once per process when calling repeatedly); None loads it here.

    Returns:
        The summary: ``features``, ``blocks``, ``seconds``, ``megapixels``,
        ``mpx_per_s``, ``km2``, ``km2_per_h``, ``rasters`` (one plan record each,
        with its normalization), ``warnings``, ``output``.

    Raises:
        MapsegError: subclasses with one-line messages (bad raster, model, output).
    """
    config = config or TileConfig()
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        return _tile_infer(rasters, output, model, config, report, loaded_model)


def _tile_infer(
    rasters: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    model: str | os.PathLike[str],
    config: TileConfig,
    report: Reporter,
    loaded_model: Any,
) -> dict[str, Any]:
    started = time.perf_counter()
    if not rasters:
        raise ConfigError("no raster given; pass one or more GeoTIFF files")
    output = check_output(output, config.overwrite)
    extra_outputs = [
        (opt, kind)
        for opt, kind in ((config.save_probabilities, "probability"), (config.save_mask, "mask"))
        if opt
    ]
    several = len(rasters) > 1
    for opt, _ in extra_outputs:
        for raster in rasters:
            check_output(_raster_target(opt, str(raster), several), config.overwrite, "the path")
    metadata = read_metadata(model)
    config = model_polish(config, metadata)
    warnings_out: list[str] = []

    def warn(message: str) -> None:
        warnings_out.append(message)
        report({"event": "warning", "message": message})

    plans: list[RasterPlan] = []
    for raster in rasters:
        plan, notes = plan_raster(raster, metadata, config)
        plans.append(plan)
        for note in notes:
            warn(note)
    out_crs = parse_crs(config.crs, "--crs") if config.crs else plans[0].crs
    model_hash = file_sha256(model)
    provenance = {
        "mapseg_version": __version__,
        "model": str(model),
        "model_sha256": model_hash,
        "parameters": {k: v for k, v in dataclasses.asdict(config).items()},
        "rasters": [p.record() for p in plans],
    }
    total = sum(len(p.grid) for p in plans)
    report(
        {
            "event": "start",
            "total": total,
            "unit": "block",
            "rasters": [p.path for p in plans],
            "output": str(output),
        }
    )
    if loaded_model is None:
        loaded_model, _ = load_artifact(model)
    predictor = Predictor(loaded_model, metadata, config.batch_size)

    done = 0
    megapixels = 0.0
    km2 = 0.0
    # Every output is staged complete under a temporary name, then all are renamed
    # together at the end (commit_all): a failure anywhere leaves none of them.
    staged: list[_ProbabilitySink] = []
    try:
        with GpkgWriter(
            output, config.layer, out_crs, provenance, overwrite=config.overwrite
        ) as writer:
            for plan in plans:
                sinks: list[_ProbabilitySink] = []
                for opt, kind in extra_outputs:
                    sinks.append(
                        _ProbabilitySink(_raster_target(opt, plan.path, several), plan, kind)
                    )
                    staged.append(sinks[-1])
                valid = _run_raster(
                    plan, predictor, writer, sinks, config, report, started, done, total
                )
                for sink in sinks:
                    sink.stage()
                done += len(plan.grid)
                scale = plan.src_width * plan.src_height / (plan.width * plan.height)
                megapixels += plan.src_width * plan.src_height / 1e6
                km2 += valid * scale * (plan.gsd**2) / 1e6
                if valid == 0:
                    warn(f"{plan.name} is entirely nodata; no buildings from it")
            moves = [(writer.stage(), writer.path)]
            moves += [(sink.staged, sink.target) for sink in staged if sink.staged is not None]
            commit_all(moves)
    except BaseException:
        for sink in staged:
            sink.abort()
        raise
    seconds = time.perf_counter() - started
    summary = {
        "output": str(output),
        "features": writer.count,
        "blocks": total,
        "seconds": round(seconds, 3),
        "megapixels": round(megapixels, 3),
        "mpx_per_s": round(megapixels / seconds, 3) if seconds else None,
        "km2": round(km2, 6),
        "km2_per_h": round(km2 / seconds * 3600, 3) if seconds else None,
        "rasters": [p.record() for p in plans],
        "model_sha256": model_hash,
        "warnings": warnings_out,
    }
    report({"event": "done", "summary": summary})
    return summary


def _run_raster(
    plan: RasterPlan,
    predictor: Predictor,
    writer: GpkgWriter,
    sinks: list[_ProbabilitySink],
    config: TileConfig,
    report: Reporter,
    started: float,
    done_before: int,
    total: int,
) -> int:
    """Blocks of one raster in order, merged and written; returns its valid pixel count."""
    merger = BorderMerger()
    options = polish_options(plan, config)
    crs = plan.crs
    keep = bool(sinks)
    blocks = list(plan.grid.blocks())
    pixels_per_block = plan.src_width * plan.src_height / max(1, len(blocks)) / 1e6

    def read(ds: Any, block: Block) -> _Prepared:
        try:
            return _prepare(ds, plan, block, predictor.any_size)
        except rasterio.errors.RasterioIOError as exc:
            raise RasterError(
                f"cannot read {plan.name} at block {block.index}: "
                f"{str(exc).splitlines()[0]}; check the file is complete"
            ) from None

    def finish(prepared: _Prepared, prob: NDArray[np.float32]) -> int:
        result = _finish(plan, prepared, prob, keep)
        for sink in sinks:
            sink.write(result)
        _write_buildings(merger.add(result.polygons), plan, writer, options, crs)
        return result.valid_pixels

    def progress(done_here: int) -> None:
        elapsed = time.perf_counter() - started
        done = done_before + done_here
        rate = done * pixels_per_block / elapsed if elapsed else 0.0
        report(
            progress_event(
                done,
                total,
                raster=plan.name,
                mpx_per_s=round(rate, 3),
                eta_s=round(elapsed / done * (total - done), 1),
                pending_pieces=merger.pending,
            )
        )

    # Three stages overlap across consecutive blocks: a reader thread reads block k+1
    # while the model predicts block k (TensorFlow releases the GIL, and waiting on the
    # disk costs no CPU), and a writer thread vectorizes, merges and writes block k-1.
    # One block per stage: memory stays at three blocks whatever the raster size. The
    # dataset is only touched by the reader, the merger and outputs only by the writer,
    # progress is reported from this thread, always in block order.
    valid = 0
    with open_working(plan) as ds:
        reader = ThreadPoolExecutor(1, thread_name_prefix="mapseg-read")
        writer_thread = ThreadPoolExecutor(1, thread_name_prefix="mapseg-vectorize")
        try:
            next_read: Future[_Prepared] | None = reader.submit(read, ds, blocks[0])
            pending: Future[int] | None = None
            for k in range(len(blocks)):
                assert next_read is not None
                prepared = next_read.result()
                next_read = reader.submit(read, ds, blocks[k + 1]) if k + 1 < len(blocks) else None
                prob = _predict(plan, prepared, predictor)
                if pending is not None:
                    valid += pending.result()
                    progress(k)
                pending = writer_thread.submit(finish, prepared, prob)
            if pending is not None:
                valid += pending.result()
                progress(len(blocks))
        finally:
            reader.shutdown(wait=True, cancel_futures=True)
            writer_thread.shutdown(wait=True, cancel_futures=True)
    _write_buildings(merger.finish(), plan, writer, options, crs)
    return valid


def _write_buildings(
    buildings: list[Building],
    plan: RasterPlan,
    writer: GpkgWriter,
    options: PolishOptions,
    crs: CRS,
) -> None:
    if not buildings:
        return
    scales = building_scales(buildings, plan)
    for k, building in enumerate(buildings):
        scale = (float(scales.x[k]), float(scales.y[k]), float(scales.area[k]))
        score = round(mean_score(building), 4)
        for part, area_m2 in polish_on_ground(building, plan.transform, scale, options):
            writer.add(
                part,
                {"area_m2": round(area_m2, 3), "score": score, "source": plan.name},
                crs,
            )


def write_buildings(
    buildings: Sequence[Building],
    plan: RasterPlan,
    writer: GpkgWriter,
    config: TileConfig,
    crs: CRS | None = None,
) -> None:
    """Polish finished buildings of ``plan``'s raster and add them to ``writer``.

    The same polish and attributes as the single-process loop, for drivers that
    merge blocks themselves (:mod:`mapseg_core.distributed.scheduler`), so a
    building is written identically whichever door it came through. Pass
    ``crs`` (``plan.crs``) when calling often: parsing the WKT costs time.
    """
    options = polish_options(plan, config)
    _write_buildings(list(buildings), plan, writer, options, crs or plan.crs)


__all__ = [
    "BlockResult",
    "Predictor",
    "building_scales",
    "polish_on_ground",
    "RasterPlan",
    "choose_bands",
    "metres_per_unit",
    "plan_raster",
    "process_block",
    "run_block",
    "tile_infer",
    "working_grid",
    "write_buildings",
]
