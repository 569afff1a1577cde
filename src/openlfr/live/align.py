"""Landmarks, chip and quality of a detection, on dlib's native code when available.

The engine's ``FaceEngine.align`` reproduces dlib's 5-point shape predictor and
``get_face_chip`` in numpy (pixel for pixel, tested there). A live camera aligns a face on
most detection frames, so here the same two steps run on dlib's own C++ when ``dlib`` imports
(about 4x faster; the landmarks and chips are identical: ``tests/test_live_tracking.py`` checks
it), and fall back to the engine otherwise. Quality is the engine's (``engine.quality.assess``).
"""

from __future__ import annotations

import numpy as np

from ..engine.quality import assess


class Aligner:
    def __init__(self, engine, native: bool = True):
        self.engine = engine
        self._sp = None
        if native:
            try:
                import dlib

                from ..engine.models import SHAPE5, model_path

                self._dlib = dlib
                self._sp = dlib.shape_predictor(str(model_path(SHAPE5)))
            except Exception:  # no dlib, or no model file: the engine's own code
                self._sp = None

    @property
    def native(self) -> bool:
        return self._sp is not None

    def align(self, rgb: np.ndarray, det):
        """A ``Face`` (box, score, landmarks, chip, quality; no descriptor) for one Detection."""
        if self._sp is None:
            return self.engine.align(rgb, [det])[0]
        from ..engine.pipeline import Face

        dlib = self._dlib
        shape = self._sp(rgb, dlib.rectangle(*(int(v) for v in det.box)))
        pts = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
        chip = np.asarray(dlib.get_face_chip(rgb, shape, size=150, padding=0.25))
        return Face(det.box, det.score, pts, chip, assess(chip, pts, det.score))
