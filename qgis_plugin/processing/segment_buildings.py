"""``mapseg:segmentbuildings``: a raster layer in, building polygons (GeoPackage) out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from .. import engine as engine_client
from .algorithm import MapsegAlgorithm

#: Defaults of the parameters named after ``mapseg_core.config.TileConfig`` fields. The
#: plugin cannot import mapseg_core (it runs in QGIS's Python), so they are written here
#: once and tests/test_defaults.py checks them against TileConfig's.
DEFAULTS = {"block_size": 1024, "batch_size": 8}


class SegmentBuildingsAlgorithm(MapsegAlgorithm):
    """Runs ``mapseg tile-infer``; parameter keys are its options in UPPER_CASE."""

    NAME = "segmentbuildings"
    DISPLAY_NAME = "Segment buildings"
    GROUP = "Buildings"
    GROUP_ID = "buildings"
    HELP = (
        "Detects buildings in a raster with a mapseg model and writes their outlines "
        "to a GeoPackage (fields id, area_m2, score, source).<br>"
        "The mapseg engine runs in a separate process (mapseg tile-infer); set its path in "
        "Processing options → Providers → mapseg, or run “Set up mapseg engine”.<br>"
        "<b>Block size</b>, <b>overlap</b>, <b>threshold</b>, <b>minimum area</b>, "
        "<b>outlines</b>, <b>simplify</b> and <b>regularize</b> are the options of mapseg "
        "tile-infer; "
        "empty optional values mean the model's own setting. The overlap is cropped at each "
        "model-window side, so tiles join without seams."
    )

    INPUT = "INPUT"
    MODEL = "MODEL"
    BANDS = "BANDS"
    BLOCK_SIZE = "BLOCK_SIZE"
    OVERLAP = "OVERLAP"
    THRESHOLD = "THRESHOLD"
    MIN_AREA = "MIN_AREA"
    SIMPLIFY = "SIMPLIFY"
    REGULARIZE = "REGULARIZE"
    OUTLINE = "OUTLINE"
    #: OUTLINE choices, in the order of mapseg tile-infer --outline.
    OUTLINES = ("clean", "simple", "pixel")
    OUTLINE_LABELS = (
        "clean (simplified, right angles)",
        "simple (simplified only)",
        "pixel (pixel-exact)",
    )
    NODATA = "NODATA"
    GSD = "GSD"
    BATCH_SIZE = "BATCH_SIZE"
    OUTPUT = "OUTPUT"
    FEATURES = "FEATURES"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        """Declare the parameters, one ``addParameter`` each, in the order the dialog shows.

        Over 80 lines on purpose: it is a flat list of declarations (no branches),
        and split into parts the form's order would no longer read top to bottom.
        """
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Input raster")))
        # Empty: the engine's bundled building model (see _model()).
        self.addParameter(
            QgsProcessingParameterFile(
                self.MODEL,
                self.tr("Model file (.keras or .onnx; empty: the bundled building model)"),
                behavior=QgsProcessingParameterFile.File,
                fileFilter=self.tr("mapseg models (*.keras *.onnx)"),
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterBand(
                self.BANDS,
                self.tr("Bands in model order (empty: from colour interpretation)"),
                parentLayerParameterName=self.INPUT,
                optional=True,
                allowMultiple=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.BLOCK_SIZE,
                self.tr("Block size (pixels)"),
                type=QgsProcessingParameterNumber.Integer,
                defaultValue=DEFAULTS["block_size"],
                minValue=1,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.OVERLAP,
                self.tr("Overlap in pixels (empty: the model's)"),
                type=QgsProcessingParameterNumber.Integer,
                optional=True,
                minValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.THRESHOLD,
                self.tr("Probability threshold (empty: the model's)"),
                type=QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.0,
                maxValue=1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MIN_AREA,
                self.tr("Minimum building area (m²; empty: the model's)"),
                type=QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.OUTLINE,
                self.tr("Outlines (empty: the model's, clean)"),
                options=[self.tr(label) for label in self.OUTLINE_LABELS],
                optional=True,
                allowMultiple=False,
                defaultValue=None,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.SIMPLIFY,
                self.tr("Simplify tolerance (m; empty: the model's, 1.5 pixels of its GSD)"),
                type=QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.REGULARIZE, self.tr("Regularize (same as clean outlines)"), False
            )
        )
        advanced = [
            QgsProcessingParameterString(
                self.NODATA,
                self.tr("Nodata value (empty: as declared; 'none': ignore the declared value)"),
                optional=True,
            ),
            QgsProcessingParameterString(
                self.GSD,
                self.tr("Run at this resolution, m/pixel (empty: the model's; 'native')"),
                optional=True,
            ),
            QgsProcessingParameterNumber(
                self.BATCH_SIZE,
                self.tr("Windows per prediction batch"),
                type=QgsProcessingParameterNumber.Integer,
                defaultValue=DEFAULTS["batch_size"],
                minValue=1,
            ),
        ]
        for parameter in advanced:
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(parameter)
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT, self.tr("Buildings"), type=QgsProcessing.TypeVectorPolygon
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.FEATURES, self.tr("Number of buildings")))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        """Say what is wrong with INPUT before QGIS's generic "could not load ... not found"."""
        value = parameters.get(self.INPUT)
        if isinstance(value, str) and value and Path(value).is_file():
            layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
            if layer is None or not layer.isValid():
                return False, self._not_a_raster(value)
        return super().checkParameterValues(parameters, context)

    def _not_a_raster(self, value: Any) -> str:
        return self.tr("INPUT {value} is not a raster QGIS can open; pass a GeoTIFF or "
                       "another GDAL raster file").format(value=value)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        raster = self._raster(parameters, context)
        model = self._model(parameters, context)
        output = Path(self.parameterAsOutputLayer(parameters, self.OUTPUT, context))
        if output.suffix.lower() != ".gpkg":
            raise QgsProcessingException(
                self.tr("the output must be a GeoPackage (.gpkg), got {path}").format(path=output)
            )
        output.parent.mkdir(parents=True, exist_ok=True)
        args = ["tile-infer", raster, "-o", str(output), "--overwrite"]
        if model:
            args += ["--model", model]
        args += self._options(parameters, context)
        started = time.time()
        summary = self.run_engine(
            args,
            feedback,
            on_cancel=lambda: engine_client.remove_temporary_siblings(output, started),
        )
        for warning in summary.get("warnings") or []:
            feedback.pushDebugInfo(str(warning))
        if summary:
            feedback.pushInfo(
                self.tr("{n} buildings in {s:.1f} s ({r:.2f} Mpx/s)").format(
                    n=summary.get("features"),
                    s=float(summary.get("seconds") or 0.0),
                    r=float(summary.get("mpx_per_s") or 0.0),
                )
            )
        return {self.OUTPUT: str(output), self.FEATURES: summary.get("features")}

    def _raster(self, parameters, context) -> str:
        """The raster's file (GDAL source) for the engine; refuses what it cannot read."""
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None or not layer.isValid():
            raise QgsProcessingException(self._not_a_raster(parameters.get(self.INPUT)))
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                self.tr("INPUT {name} comes from the {provider} provider; the engine reads "
                        "raster files only: save it as a GeoTIFF first (Export → Save As)")
                .format(name=layer.name(), provider=layer.providerType())
            )
        return layer.source()

    def _model(self, parameters, context) -> str:
        """The model file, or "" to let the engine use its bundled model."""
        return self.parameterAsFile(parameters, self.MODEL, context) or ""

    def _options(self, parameters, context) -> list[str]:
        """The CLI options for the tuning parameters (unset optional ones are left out)."""
        args = [
            "--block-size", str(self.parameterAsInt(parameters, self.BLOCK_SIZE, context)),
            "--batch-size", str(self.parameterAsInt(parameters, self.BATCH_SIZE, context)),
        ]
        # Outline options left empty are not passed: the engine takes the model's, so QGIS
        # writes the polygons the CLI and Python write for the same model.
        for key, option in ((self.MIN_AREA, "--min-area"), (self.SIMPLIFY, "--simplify")):
            if _given(parameters, key):
                args += [option, repr(self.parameterAsDouble(parameters, key, context))]
        if _given(parameters, self.OUTLINE):
            choice = self.parameterAsEnum(parameters, self.OUTLINE, context)
            args += ["--outline", self.OUTLINES[choice]]
        bands = self.parameterAsInts(parameters, self.BANDS, context)
        if bands:
            args += ["--bands", ",".join(str(b) for b in bands)]
        if _given(parameters, self.OVERLAP):
            args += ["--overlap", str(self.parameterAsInt(parameters, self.OVERLAP, context))]
        if _given(parameters, self.THRESHOLD):
            threshold = self.parameterAsDouble(parameters, self.THRESHOLD, context)
            args += ["--threshold", repr(threshold)]
        if self.parameterAsBoolean(parameters, self.REGULARIZE, context):
            args.append("--regularize")
        for key, option in ((self.NODATA, "--nodata"), (self.GSD, "--gsd")):
            value = self.parameterAsString(parameters, key, context).strip()
            if value:
                args += [option, value]
        return args


def _given(parameters: dict[str, Any], key: str) -> bool:
    """Whether an optional parameter has a value (None and "" mean unset)."""
    value = parameters.get(key)
    return value is not None and value != ""
