"""``mapseg:trainmodel``: a COCO export in, a mapseg model file and its report out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from .algorithm import MapsegAlgorithm

#: Presets of ``mapseg train --preset`` (the first is the CLI's default).
PRESETS = ["seed-b4", "b0", "tiny"]


class TrainModelAlgorithm(MapsegAlgorithm):
    """Runs ``mapseg train``; parameter keys are its options in UPPER_CASE."""

    NAME = "trainmodel"
    DISPLAY_NAME = "Train building model"
    GROUP = "Buildings"
    GROUP_ID = "buildings"
    HELP = (
        "Trains a building U-Net on a COCO export (CVAT, Label Studio, crowdAI...) and writes "
        "a run folder: model.keras (the model file for “Segment buildings”), report.csv "
        "(scores on the train/valid/test splits), training curves and example predictions.<br>"
        "Presets: seed-b4 (EfficientNet-B4, the original setup; a GPU is advised), b0 "
        "(EfficientNet-B0, CPU-friendly), tiny (seconds per epoch; smoke tests only). "
        "An empty number of epochs uses the preset's.<br>"
        "The mapseg engine runs in a separate process (mapseg train)."
    )

    ANNOTATIONS = "ANNOTATIONS"
    IMAGES_DIR = "IMAGES_DIR"
    PRESET = "PRESET"
    EPOCHS = "EPOCHS"
    ENCODER_WEIGHTS = "ENCODER_WEIGHTS"
    OUTPUT = "OUTPUT"
    MODEL = "MODEL"
    REPORT = "REPORT"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFile(
                self.ANNOTATIONS,
                self.tr("COCO annotations file"),
                behavior=QgsProcessingParameterFile.File,
                fileFilter=self.tr("COCO JSON (*.json)"),
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.IMAGES_DIR,
                self.tr("Images folder"),
                behavior=QgsProcessingParameterFile.Folder,
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.PRESET, self.tr("Preset"), options=PRESETS, defaultValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.EPOCHS,
                self.tr("Epochs (empty: the preset's)"),
                type=QgsProcessingParameterNumber.Integer,
                optional=True,
                minValue=1,
            )
        )
        weights = QgsProcessingParameterString(
            self.ENCODER_WEIGHTS,
            self.tr("Encoder weights: imagenet, a weights file, or none (empty: the preset's)"),
            optional=True,
        )
        weights.setFlags(weights.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(weights)
        self.addParameter(
            QgsProcessingParameterFolderDestination(self.OUTPUT, self.tr("Output folder"))
        )
        self.addOutput(QgsProcessingOutputFile(self.MODEL, self.tr("Model file")))
        self.addOutput(QgsProcessingOutputFile(self.REPORT, self.tr("Report (CSV)")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        annotations = self.parameterAsFile(parameters, self.ANNOTATIONS, context)
        images = self.parameterAsFile(parameters, self.IMAGES_DIR, context)
        run_dir = Path(self.parameterAsString(parameters, self.OUTPUT, context))
        if run_dir.is_dir() and any(run_dir.iterdir()):
            raise QgsProcessingException(
                self.tr("output folder {path} is not empty; choose a new or empty folder")
                .format(path=run_dir)
            )
        preset = PRESETS[self.parameterAsEnum(parameters, self.PRESET, context)]
        args = ["train", annotations, images, "-o", str(run_dir), "--preset", preset]
        epochs = parameters.get(self.EPOCHS)
        if epochs is not None and epochs != "":
            args += ["--epochs", str(self.parameterAsInt(parameters, self.EPOCHS, context))]
        weights = self.parameterAsString(parameters, self.ENCODER_WEIGHTS, context).strip()
        if weights:
            args += ["--encoder-weights", weights]
        summary = self.run_engine(args, feedback)
        model = str(summary.get("model") or run_dir / "model.keras")
        feedback.pushInfo(self.tr("model: {path}").format(path=model))
        return {
            self.OUTPUT: str(run_dir),
            self.MODEL: model,
            self.REPORT: str(run_dir / "report.csv"),
        }
