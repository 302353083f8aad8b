"""What every mapseg algorithm shares: naming, translation, the engine runner."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsProcessingAlgorithm

from .. import engine as engine_client


class MapsegAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses set ``NAME``, ``DISPLAY_NAME``, ``GROUP`` and ``HELP``."""

    NAME = ""
    DISPLAY_NAME = ""
    GROUP = ""
    GROUP_ID = ""
    HELP = ""

    def tr(self, message: str) -> str:
        return engine_client.tr(message)

    def createInstance(self) -> MapsegAlgorithm:  # noqa: N802 (Qt API)
        return type(self)()

    def name(self) -> str:
        return self.NAME

    def displayName(self) -> str:  # noqa: N802
        return self.tr(self.DISPLAY_NAME)

    def group(self) -> str:
        return self.tr(self.GROUP)

    def groupId(self) -> str:  # noqa: N802
        return self.GROUP_ID

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(self.HELP)

    def run_engine(self, args: list[str], feedback: Any, **kwargs: Any) -> dict[str, Any]:
        """Locate the engine and run ``mapseg ARGS`` (see :func:`engine.run_engine`)."""
        found = engine_client.find_engine()
        feedback.pushInfo(self.tr("mapseg engine: {exe} (from {source})").format(
            exe=found.executable, source=found.source))
        return engine_client.run_engine(found, args, feedback, **kwargs)
