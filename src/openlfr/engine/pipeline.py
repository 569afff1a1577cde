"""Pixels to faces: detect, landmarks, aligned chip, quality and 128-D descriptor.

``FaceEngine`` glues the engine's parts together and is what the rest of openlfr uses::

    engine = FaceEngine()                # RetinaFace boxes (detector="hog" / "cnn": dlib's)
    faces = engine.analyze(rgb)          # list[Face], descriptors computed in one batch

A face found by RetinaFace also gets the second model's crop and feature (SFace,
``engine/sface.py``; ``Face.second``) when that model is installed (``second="auto"``, the
default), which the scoring model fuses with dlib's (``openlfr.scoring``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .chips import face_chip
from .descriptor import DescriptorModel
from .detection import Detection, make_detector
from .images import as_rgb
from .quality import Quality, assess
from .shape_predictor import load_shape_predictor

DEFAULT_THRESHOLD = 0.6  # dlib's published same/different distance for one pair


@dataclass
class Face:
    box: tuple[int, int, int, int]  # left, top, right, bottom (dlib convention, inclusive)
    score: float
    landmarks: np.ndarray  # (5, 2) float
    chip: np.ndarray  # (150, 150, 3) uint8 RGB
    quality: Quality
    descriptor: np.ndarray | None = field(default=None, repr=False)  # (128,) float32
    second_crop: np.ndarray | None = field(default=None, repr=False)  # (112, 112, 3) uint8 RGB: SFace's aligned crop
    second: np.ndarray | None = field(default=None, repr=False)  # (128,) float32 unit SFace feature

    def to_json(self, image: str | None = None) -> dict:
        d = {
            "box": [int(v) for v in self.box],
            "score": round(float(self.score), 6),
            "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in self.landmarks],
            "quality": round(self.quality.score, 4),
        }
        if image is not None:
            d = {"image": image, **d}
        if self.descriptor is not None:
            d["descriptor"] = [float(v) for v in self.descriptor]
        return d


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between descriptors (dlib's metric; same person below ~0.6)."""
    return np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32), axis=-1)


class FaceEngine:
    """Detector + 5-point landmarks + chips + quality + descriptor runtime.

    Landmarks (``landmarks=``): with RetinaFace (the default detector), ``"fused"`` (the default)
    aligns the chip on the mean of the detector's own 5 points and dlib's 5-point model's from its
    box (sub-pixel: ``retina.fused_points``), which places it better than either alone (LFW folds
    1-5, docs/evaluation.md; the live path uses dlib's whole-pixel points, ``live.align``); ``"detector"`` on RetinaFace's points alone (``retina.dlib_points``).
    Either way a face under 40 px is re-detected enlarged first (``retina.enlarged``) and aligned
    on the enlarged detection's own points, which serve such faces best (docs/live.md). With HOG
    or the CNN, and with ``landmarks="dlib"``, dlib's 5-point model from the box. Points are
    rounded to whole pixels before the chip is cut, as dlib does."""

    LANDMARKS = ("fused", "detector", "dlib")

    def __init__(
        self,
        detector: str = "retina",
        upsample: int | None = None,
        min_face: int | None = None,
        flip: bool = False,
        jitter: int = 0,
        descriptor: DescriptorModel | None = None,
        threads: int | None = None,
        landmarks: str = "fused",
        second: str = "auto",
    ):
        if landmarks not in self.LANDMARKS:
            raise ValueError("landmarks must be 'fused' (the detector's own averaged with dlib's 5-point model's, when "
                             "the detector gives them), 'detector' (its own alone) or 'dlib'")
        self.landmarks = landmarks
        self.detector_name = detector
        if upsample is None:  # HOG and the CNN find faces from 40 px at 1; RetinaFace from ~20 px at 0
            upsample = 0 if detector == "retina" else 1
        self.detector = make_detector(detector, upsample=upsample, min_face=min_face)
        self.flip = flip
        self.jitter = jitter
        self._descriptor = descriptor
        self._threads = threads
        from .sface import SECOND_MODELS

        if second not in SECOND_MODELS:
            raise ValueError(f"second must be one of {', '.join(SECOND_MODELS)} (the second model, fused in the score)")
        self.second_choice = second
        self._second = None
        self._second_loaded = False

    @property
    def second_model(self):
        """The second model (``engine.sface.SFaceModel``) or None: not installed (``"auto"``), not
        wanted (``"none"``), or a detector without its own landmarks (HOG, the CNN)."""
        if not self._second_loaded:
            from .sface import load_second_model

            self._second = load_second_model(self.second_choice) if self.detector_name == "retina" else None
            self._second_loaded = True
        return self._second

    @cached_property
    def shape_predictor(self):
        return load_shape_predictor()

    @property
    def descriptor(self) -> DescriptorModel:
        if self._descriptor is None:
            self._descriptor = DescriptorModel(threads=self._threads)
        return self._descriptor

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detector.detect(as_rgb(image))

    def align(self, image: np.ndarray, detections: list[Detection]) -> list[Face]:
        """Landmarks, chip and quality for each detection (no descriptor yet)."""
        rgb = as_rgb(image)
        faces = []
        for det in detections:
            pts, chip = self.landmarks_and_chip(rgb, det)
            pose = pts
            if self.landmarks != "dlib" and det.landmarks is not None:
                from .retina import pose_points

                pose = pose_points(det.landmarks)
            face = Face(det.box, det.score, pts, chip, assess(chip, pose, det.score))
            if det.landmarks is not None and self.second_model is not None:
                face.second_crop = self.second_model.align(rgb, det)
            faces.append(face)
        return faces

    def landmarks_and_chip(self, rgb: np.ndarray, det: Detection) -> tuple[np.ndarray, np.ndarray]:
        """dlib-convention 5 landmarks (sub-pixel when from the detector) and the 150x150 chip."""
        if self.landmarks != "dlib" and det.landmarks is not None:
            from .retina import SMALL_FACE, dlib_points, enlarged, fused_points

            if det.width < SMALL_FACE and hasattr(self.detector, "detect_batch"):
                found = enlarged(self.detector, rgb, det)
                if found is not None:
                    big, bdet, f, (cl, ct) = found
                    pts = dlib_points(bdet.landmarks)
                    chip = face_chip(big, np.floor(pts + 0.5))
                    return (pts + 0.5) / f - 0.5 + np.array([cl, ct]), chip
            if self.landmarks == "fused":
                pts = fused_points(det.landmarks, self.shape_predictor.predict_subpixel(rgb, det.box))
            else:
                pts = dlib_points(det.landmarks)
            return pts, face_chip(rgb, np.floor(pts + 0.5))
        pts = self.shape_predictor.predict(rgb, det.box)
        return pts, face_chip(rgb, pts)

    def embed(self, faces: list[Face]) -> list[Face]:
        """Fill in descriptors for faces, in one batch."""
        if faces:
            d = self.descriptor.compute(np.stack([f.chip for f in faces]), flip=self.flip, jitter=self.jitter)
            for f, v in zip(faces, d):
                f.descriptor = v
            with_crop = [f for f in faces if f.second_crop is not None]
            if with_crop and self.second_model is not None:
                feats = self.second_model.compute(np.stack([f.second_crop for f in with_crop]), flip=self.flip)
                for f, v in zip(with_crop, feats):
                    f.second = v
        return faces

    def analyze(self, image: np.ndarray, descriptors: bool = True) -> list[Face]:
        rgb = as_rgb(image)
        faces = self.align(rgb, self.detect(rgb))
        return self.embed(faces) if descriptors else faces
