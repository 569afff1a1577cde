"""Face boxes and the face detectors: RetinaFace (``retina.py``, the default), dlib's HOG (as
is) and the MMOD CNN on onnxruntime.

Boxes follow dlib: ``(left, top, right, bottom)`` integers, right/bottom inclusive, so a box's
width is ``right - left + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .runtime import choose_runtime


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # left, top, right, bottom (inclusive, dlib convention)
    score: float
    # from detectors that give them (RetinaFace): 5 points (eyes, nose, mouth corners; pixel
    # indices as dlib's) and the detector's own box (x1, y1, x2, y2, float, exclusive)
    landmarks: np.ndarray | None = field(default=None, compare=False, repr=False)
    raw_box: tuple[float, float, float, float] | None = field(default=None, compare=False, repr=False)

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0] + 1

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1] + 1

    def iou(self, other: Detection | tuple[int, int, int, int]) -> float:
        return iou(self.box, other.box if isinstance(other, Detection) else other)

    def mapped(self, s: float, dx: float = 0.0, dy: float = 0.0) -> Detection:
        """This detection, found on an image resized by 1/``s`` and cropped at (``dx``, ``dy``),
        in the original image's pixels (box edges as pixel edges; landmarks as pixel indices)."""
        l, t, r, b = self.box
        box = (int(round(dx + l * s)), int(round(dy + t * s)),
               int(round(dx + (r + 1) * s - 1)), int(round(dy + (b + 1) * s - 1)))
        pts = None if self.landmarks is None else (self.landmarks + 0.5) * s - 0.5 + np.array([dx, dy])
        raw = None if self.raw_box is None else tuple(v * s + o for v, o in zip(self.raw_box, (dx, dy, dx, dy)))
        return Detection(box, self.score, landmarks=pts, raw_box=raw)


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two inclusive integer boxes (true union, not dlib's NMS test)."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / float(area(a) + area(b) - inter)


CONTAIN = 0.7  # nms: overlap over the smaller box's area beyond which the weaker box goes


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.4, contain: float = CONTAIN) -> np.ndarray:
    """Greedy non-max suppression (true IoU on float boxes); indices kept, best first. A box is
    also suppressed when it and a better one overlap by more than ``contain`` of the smaller's
    area: RetinaFace sometimes finds a small "face" inside a large one (eyes and nose of a face
    seen at a finer scale), which IoU alone keeps, and which a tracker would count as a second
    person."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = iw * ih
        ok = inter / np.maximum(area[i] + area[rest] - inter, 1e-9) <= iou
        ok &= inter / np.maximum(np.minimum(area[i], area[rest]), 1e-9) <= contain
        order = rest[ok]
    return np.array(keep, np.int64)


class HogDetector:
    """dlib's frontal HOG detector (``run(img, upsample, threshold)``, scores kept); finds faces
    of about 80 px and up at upsample 0, 40 px at 1. ``min_face`` drops smaller boxes;
    ``threshold`` is dlib's ``adjust_threshold`` (below 0 finds more, and weaker, faces).

    It takes RGB or grey images (``accepts_grey``): on RGB dlib takes the strongest gradient
    of the three channels, on grey the one gradient, about 20% cheaper for the same faces (the
    live scheduler gives it grey frames). Each detector has a dlib detector of its own, which
    is not safe to share between threads: one per thread (a live run's cameras each have one)."""

    accepts_grey = True

    def __init__(self, upsample: int = 1, min_face: int | None = None, threshold: float = 0.0):
        import dlib

        self.upsample = int(upsample)
        self.min_face = min_face
        self.threshold = float(threshold)
        self._det = dlib.get_frontal_face_detector()

    def detect(self, image: np.ndarray, threshold: float | None = None) -> list[Detection]:
        from .images import as_rgb

        a = np.asarray(image)
        img = np.ascontiguousarray(a) if a.ndim == 2 and a.dtype == np.uint8 else as_rgb(a)
        t = self.threshold if threshold is None else threshold
        rects, scores, _ = self._det.run(img, self.upsample, t)
        dets = [Detection((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]
        if self.min_face:
            dets = [d for d in dets if min(d.width, d.height) >= self.min_face]
        return dets  # dlib's order (best first)

    __call__ = detect


def pick_runtime(runtime: str, precision: str = "fp32") -> str:
    """``onnx`` or ``torch`` (``runtime.choose_runtime``), with the detectors' error message."""
    try:
        return choose_runtime(runtime, precision)
    except ValueError:
        raise ValueError(f"unknown detector runtime {runtime!r} (onnx, torch, auto)") from None


DETECTORS = ("retina", "hog", "cnn")


def make_detector(name: str = "hog", upsample: int | None = 1, min_face: int | None = None, threads: int | None = None,
                  runtime: str = "auto", precision: str = "fp32", threshold: float | None = None):
    """``'retina'`` (RetinaFace, ``retina.py``), ``'hog'`` (dlib) or ``'cnn'`` (MMOD).
    ``upsample=None`` picks it from ``min_face`` for HOG and the CNN (0 for faces of 80 px and
    up, 1 from 40, 2 from 20; RetinaFace: 0 down to 20 px, 1 below). The networks' ``runtime``:
    ``onnx`` (onnxruntime, CPU), ``torch`` (PyTorch: CUDA when present, ``precision``
    fp32/fp16/bf16) or ``auto``: torch on a CUDA GPU, else onnx; ``$OPENLFR_RUNTIME`` overrides
    ``auto``. ``threshold``: RetinaFace's score threshold (default 0.5), HOG's ``adjust_threshold``
    (default 0)."""
    if name == "hog":
        from .mmod import auto_upsample

        return HogDetector(auto_upsample(min_face) if upsample is None else upsample, min_face,
                           0.0 if threshold is None else threshold)
    if name == "retina":
        from .retina import THRESHOLD, RetinaDetector

        if upsample is None:
            upsample = 1 if min_face and min_face < 20 else 0
        thr = THRESHOLD if threshold is None else threshold
        if pick_runtime(runtime) == "onnx":
            if precision != "fp32":
                raise ValueError("the onnxruntime RetinaFace detector is fp32 only; use runtime='torch' for fp16/bf16")
            return RetinaDetector(thr, upsample, min_face, threads=threads)
        from .torch_retina import TorchRetinaNetwork

        return RetinaDetector(thr, upsample, min_face, network=TorchRetinaNetwork(precision=precision))
    if name in ("cnn", "mmod"):
        runtime = pick_runtime(runtime)
        if runtime == "onnx":
            if precision != "fp32":
                raise ValueError("the onnxruntime MMOD detector is fp32 only; use runtime='torch' for fp16/bf16")
            from .mmod import MmodDetector

            return MmodDetector(upsample=upsample, min_face=min_face, threads=threads)
        from .torch_mmod import TorchMmodDetector

        return TorchMmodDetector(upsample=upsample, min_face=min_face, precision=precision, threads=threads)
    raise ValueError(f"unknown detector {name!r}; use 'retina', 'hog' or 'cnn'")
