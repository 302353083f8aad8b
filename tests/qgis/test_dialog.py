"""The *Segment buildings* dialog renders headless (the docs' screenshot comes from here).

``MAPSEG_SCREENSHOTS=DIR`` saves it as ``DIR/qgis-segment-buildings.png``:

    $ MAPSEG_SCREENSHOTS=docs/img bash scripts/test.sh -k dialog
"""

from __future__ import annotations

import os
from pathlib import Path


def test_algorithm_dialog_renders(qgis_app, data):
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
    from qgis.PyQt.QtWidgets import QApplication

    layer = QgsRasterLayer(str(data["scene"]), "orthophoto")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("mapseg:segmentbuildings")
    # processing.createAlgorithmDialog() wants the desktop's iface; the dialog itself does not.
    dialog = AlgorithmDialog(algorithm, parent=None)
    dialog.setParameters({"INPUT": layer.id(), "MODEL": "/data/models/buildings.keras"})
    try:
        dialog.resize(960, 800)
        dialog.show()
        for _ in range(5):
            QApplication.processEvents()
        image = dialog.grab().toImage()
        assert not image.isNull() and image.width() >= 900
        colours = {
            image.pixel(x, y)
            for x in range(0, image.width(), 13)
            for y in range(0, image.height(), 13)
        }
        assert len(colours) > 10  # widgets were drawn, not a blank window
        folder = os.environ.get("MAPSEG_SCREENSHOTS")
        if folder:
            assert image.save(str(Path(folder) / "qgis-segment-buildings.png"))
    finally:
        dialog.close()
        dialog.deleteLater()
        QApplication.processEvents()
        QgsProject.instance().removeMapLayer(layer.id())
