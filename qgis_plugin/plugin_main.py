"""The plugin object: registers the ``mapseg`` Processing provider and the menu entries."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication

from .engine import tr


class MapsegPlugin:
    """Loaded by QGIS (``classFactory``); under ``qgis_process`` only ``initProcessing`` runs."""

    def __init__(self, iface: Any):
        self.iface = iface
        self.provider = None
        self.actions: list[Any] = []

    def initProcessing(self) -> None:  # noqa: N802 (the name QGIS calls)
        from .processing.provider import MapsegProvider

        if self.provider is None:
            self.provider = MapsegProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()
        from qgis.PyQt.QtWidgets import QAction

        for text, algorithm in (
            (tr("Set up mapseg engine…"), "mapseg:setupengine"),
            (tr("Check mapseg engine…"), "mapseg:checkengine"),
        ):
            action = QAction(self.provider.icon(), text, self.iface.mainWindow())
            action.triggered.connect(lambda _=False, alg=algorithm: _open_dialog(alg))
            self.iface.addPluginToMenu("mapseg", action)
            self.actions.append(action)

    def unload(self) -> None:
        for action in self.actions:
            self.iface.removePluginMenu("mapseg", action)
        self.actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None


def _open_dialog(algorithm_id: str) -> None:
    import processing

    processing.execAlgorithmDialog(algorithm_id, {})
