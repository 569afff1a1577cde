"""Synthetic degradation of a face image: what a small, soft, compressed CCTV face looks like.

Why: the quality bands of :mod:`openlfr.scoring.bands` are calibrated on good photos (LFW) made to
look like the faces a camera sees from afar. A face ``face_px`` pixels wide is made by shrinking
the whole image until the face box is that wide, optionally blurring it there (focus, motion),
compressing it as JPEG at ``jpeg_quality`` (a stream's encoder), then enlarging it back to its
original size (as the aligner does when it cuts a 150x150 chip from a small face). The landmarks
of the original image stay valid for the restored one.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

LEVELS_PX = (64, 48, 32, 24)  # face widths the bands are calibrated at
JPEG_RANGE = (30, 70)


@dataclass(frozen=True)
class Degradation:
    face_px: float  # face box width after shrinking (px)
    jpeg_quality: int  # 1-100; 0 = no compression
    blur_sigma: float  # Gaussian blur at the shrunk size (px); 0 = none

    def as_dict(self) -> dict:
        return {"face_px": self.face_px, "jpeg_quality": self.jpeg_quality, "blur_sigma": self.blur_sigma}


def draw(face_px: float, key: str, salt: int = 0) -> Degradation:
    """A reproducible degradation for one image (``key``: e.g. its file name): JPEG quality drawn
    in 30-70, and a blur of sigma 0.4-1.0 px for half the images."""
    rng = np.random.default_rng(zlib.crc32(f"{key}|{face_px}|{salt}".encode()))
    q = int(rng.integers(JPEG_RANGE[0], JPEG_RANGE[1] + 1))
    blur = float(rng.uniform(0.4, 1.0)) if rng.random() < 0.5 else 0.0
    return Degradation(float(face_px), q, round(blur, 3))


def degrade(rgb: np.ndarray, face_width: float, d: Degradation) -> np.ndarray:
    """``rgb`` (H, W, 3) uint8 whose face box is ``face_width`` px wide, degraded as ``d`` says and
    returned at its original size."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    if face_width <= 0 or d.face_px <= 0:
        raise ValueError("face widths must be positive")
    h, w = rgb.shape[:2]
    s = min(1.0, d.face_px / float(face_width))
    small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    if d.blur_sigma > 0:
        small = cv2.GaussianBlur(small, (0, 0), d.blur_sigma)
    if d.jpeg_quality:
        ok, buf = cv2.imencode(".jpg", small[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(d.jpeg_quality)])
        if not ok:
            raise ValueError("JPEG encoding failed")
        small = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return np.ascontiguousarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))
