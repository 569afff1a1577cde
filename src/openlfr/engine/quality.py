"""A quality score per face, for best-shot selection and enrolment checks.

Four parts, each in [0, 1], combined as a weighted geometric mean (any part near 0 pulls the
whole score down, since a tiny, blurred or profile face is poor however good the rest is):

- ``size``: inter-ocular distance in pixels of the source image; 1 at 40 px and above
  (a face about 100 px wide), falling linearly to 0 at 8 px.
- ``sharpness``: variance of the Laplacian of the grey 150x150 chip, v / (v + 100);
  blurred or heavily compressed chips score low.
- ``pose``: frontality from the 5 landmarks: the nose's sideways offset from the eyes'
  midpoint (yaw) and the roll of the eye line; 1 for a frontal upright face.
- ``detector``: the detector's own confidence squashed to [0, 1] (logistic around 0).

Weights: size 0.3, sharpness 0.25, pose 0.3, detector 0.15.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

WEIGHTS = {"size": 0.3, "sharpness": 0.25, "pose": 0.3, "detector": 0.15}


@dataclass(frozen=True)
class Quality:
    score: float
    size: float
    sharpness: float
    pose: float
    detector: float
    interocular_px: float
    yaw: float  # nose offset / inter-ocular distance, ~0 when frontal
    roll_deg: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in self.__dict__.items()}


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dlib's 5-point model: points 0-1 one eye's corners, 2-3 the other's, 4 under the nose."""
    return landmarks[0:2].mean(axis=0), landmarks[2:4].mean(axis=0)


def pose_from_landmarks(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(interocular px, yaw proxy, roll degrees) from 5 landmarks."""
    a, b = eye_centres(np.asarray(landmarks, np.float64))
    v = b - a
    iod = float(np.hypot(*v))
    if iod < 1e-6:
        return 0.0, 1.0, 0.0
    roll = math.degrees(math.atan2(v[1], v[0]))
    # Express the nose in the eye-line frame: x along the eyes, origin at their midpoint.
    u = v / iod
    nose = np.asarray(landmarks[4], np.float64) - (a + b) / 2
    yaw = float(nose @ u) / iod
    return iod, yaw, roll


def sharpness_of(chip: np.ndarray) -> float:
    grey = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY) if chip.ndim == 3 else chip
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def assess(chip: np.ndarray, landmarks: np.ndarray, detector_score: float) -> Quality:
    iod, yaw, roll = pose_from_landmarks(landmarks)
    if abs(roll) > 90:  # eye points ordered right-to-left in the image: measure from the other side
        roll = roll - math.copysign(180.0, roll)
    size = float(np.clip((iod - 8.0) / 32.0, 0.0, 1.0))
    v = sharpness_of(chip)
    sharp = v / (v + 100.0)
    pose = float(np.clip(1.0 - abs(yaw) / 0.5, 0.0, 1.0) * np.clip(1.0 - max(abs(roll) - 15.0, 0.0) / 45.0, 0.0, 1.0))
    det = 1.0 / (1.0 + math.exp(-2.0 * float(detector_score)))
    parts = {"size": size, "sharpness": sharp, "pose": pose, "detector": det}
    score = math.exp(sum(w * math.log(max(parts[k], 1e-3)) for k, w in WEIGHTS.items()))
    return Quality(score, size, sharp, pose, det, iod, yaw, roll)
