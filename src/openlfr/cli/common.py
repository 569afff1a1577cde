"""Options and helpers shared by the CLI modules."""

from __future__ import annotations

from enum import Enum


class Detector(str, Enum):
    retina = "retina"
    hog = "hog"
    cnn = "cnn"


def engine_from_options(detector: "Detector | str", upsample: int | None, min_face: int | None, flip: bool = False):
    """The engine of ``faces`` and ``compare``: they report dlib's descriptors and distances, so the
    second model (fused only against a watchlist's cohorts) is not run for them."""
    from ..engine.pipeline import FaceEngine

    name = detector.value if isinstance(detector, Detector) else detector
    return FaceEngine(detector=name, upsample=upsample, min_face=min_face, flip=flip, second="none")
