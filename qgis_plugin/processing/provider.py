"""The ``mapseg`` Processing provider: algorithms, the engine setting, GeoPackage outputs."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..engine import ENGINE_SETTING, tr
from .check_engine import CheckEngineAlgorithm
from .segment_buildings import SegmentBuildingsAlgorithm
from .setup_engine import SetupEngineAlgorithm
from .train_model import TrainModelAlgorithm


class MapsegProvider(QgsProcessingProvider):
    """Registers the mapseg algorithms and the *mapseg engine executable* option."""

    def load(self) -> bool:
        """Add the engine option to Processing options → Providers → mapseg."""
        from processing.core.ProcessingConfig import ProcessingConfig, Setting

        ProcessingConfig.settingIcons[self.name()] = self.icon()
        ProcessingConfig.addSetting(
            Setting(
                self.name(),
                ENGINE_SETTING,
                tr("mapseg engine executable (empty: MAPSEG_ENGINE, the private "
                   "environment, then PATH)"),
                "",
                valuetype=Setting.FILE,
            )
        )
        ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        from processing.core.ProcessingConfig import ProcessingConfig

        ProcessingConfig.removeSetting(ENGINE_SETTING)

    def loadAlgorithms(self) -> None:  # noqa: N802 (Qt API)
        for algorithm in (
            SegmentBuildingsAlgorithm(),
            TrainModelAlgorithm(),
            CheckEngineAlgorithm(),
            SetupEngineAlgorithm(),
        ):
            self.addAlgorithm(algorithm)

    def id(self) -> str:
        return "mapseg"

    def name(self) -> str:
        return "mapseg"

    def longName(self) -> str:  # noqa: N802
        return tr("mapseg building footprints")

    def icon(self) -> QIcon:
        return QIcon(str(Path(__file__).resolve().parents[1] / "icon.svg"))

    def supportedOutputVectorLayerExtensions(self) -> list[str]:  # noqa: N802
        """The engine writes GeoPackages only; Processing then offers only those."""
        return ["gpkg"]

    def supportsNonFileBasedOutput(self) -> bool:  # noqa: N802
        """Memory layers are not possible: the engine is another process."""
        return False
