"""Face boxes and the face detectors: dlib's HOG (as is) and the MMOD CNN on onnxruntime.

Boxes follow dlib: ``(left, top, right, bottom)`` integers, right/bottom inclusive, so a box's
width is ``right - left + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .runtime import choose_runtime


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # left, top, right, bottom (inclusive, dlib convention)
    score: float

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0] + 1

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1] + 1

    def iou(self, other: Detection | tuple[int, int, int, int]) -> float:
        return iou(self.box, other.box if isinstance(other, Detection) else other)


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two inclusive integer boxes (true union, not dlib's NMS test)."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / float(area(a) + area(b) - inter)


@lru_cache(maxsize=1)
def _hog():
    import dlib

    return dlib.get_frontal_face_detector()


class HogDetector:
    """dlib's frontal HOG detector (``run(img, upsample, 0.0)``, scores kept); finds faces
    of about 80 px and up at upsample 0, 40 px at 1. ``min_face`` drops smaller boxes."""

    def __init__(self, upsample: int = 1, min_face: int | None = None):
        self.upsample = int(upsample)
        self.min_face = min_face

    def detect(self, image: np.ndarray) -> list[Detection]:
        from .images import as_rgb

        rects, scores, _ = _hog().run(as_rgb(image), self.upsample, 0.0)
        dets = [Detection((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]
        if self.min_face:
            dets = [d for d in dets if min(d.width, d.height) >= self.min_face]
        return dets  # dlib's order (best first)

    __call__ = detect


def make_detector(name: str = "hog", upsample: int | None = 1, min_face: int | None = None, threads: int | None = None,
                  runtime: str = "auto", precision: str = "fp32"):
    """``'hog'`` (dlib) or ``'cnn'`` (MMOD). ``upsample=None`` picks it from ``min_face`` for the
    CNN (0 for faces of 80 px and up, 1 from 40, 2 from 20). The CNN's ``runtime``: ``onnx``
    (onnxruntime, CPU), ``torch`` (PyTorch: CUDA when present, ``precision`` fp32/fp16/bf16)
    or ``auto``: torch on a CUDA GPU, else onnx; ``$OPENLFR_RUNTIME`` overrides ``auto``."""
    if name == "hog":
        from .mmod import auto_upsample

        return HogDetector(auto_upsample(min_face) if upsample is None else upsample, min_face)
    if name in ("cnn", "mmod"):
        try:
            runtime = choose_runtime(runtime)
        except ValueError:
            raise ValueError(f"unknown detector runtime {runtime!r} (onnx, torch, auto)") from None
        if runtime == "onnx":
            if precision != "fp32":
                raise ValueError("the onnxruntime MMOD detector is fp32 only; use runtime='torch' for fp16/bf16")
            from .mmod import MmodDetector

            return MmodDetector(upsample=upsample, min_face=min_face, threads=threads)
        if runtime == "torch":
            from .torch_mmod import TorchMmodDetector

            return TorchMmodDetector(upsample=upsample, min_face=min_face, precision=precision, threads=threads)
    raise ValueError(f"unknown detector {name!r}; use 'hog' or 'cnn'")
