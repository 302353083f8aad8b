"""Building-level metrics: polygon matching (F1@0.5), COCO AP, and layer-vs-layer evaluation.

:mod:`~mapseg_core.evaluation.polygons` and :mod:`~mapseg_core.evaluation.predictions`
are pure; :mod:`~mapseg_core.evaluation.model` runs a model over COCO images and
:mod:`~mapseg_core.evaluation.vectors` reads vector layers.
"""
