"""A loaded model and how the engine calls it: batched, numpy in and out, optional TTA."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from mapseg_core.inference.stitch import to_probability


class Predictor:
    """A loaded model and how to call it: batched, numpy in and out."""

    def __init__(
        self,
        model: Any,
        batch_size: int,
        any_size: bool | None = None,
    ):
        """Args:
        model: a Keras model mapping ``(n, h, w, bands)`` float32 to ``(n, h, w, 1)``.
        batch_size: windows per ``predict_on_batch`` call.
        any_size: the model takes inputs of any size, so blocks are predicted as
            spans (see :meth:`~mapseg_core.inference.windows.WindowGrid.spans_of`);
            None: True when the model's input has no fixed height and width.
        """
        self.model = model
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


__all__ = ["Predictor"]
