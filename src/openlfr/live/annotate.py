"""An annotated video of a run: boxes and names on alerts, every other face blurred.

Bystanders are blurred in anything stored (DESIGN.md). The detector does not find every face
(profiles, faces looking down, faces too small), and a face that was never found cannot be
blurred by its box, so by default the *whole frame* is blurred (``background_blur``: shrunk
16 times and enlarged again: a 130-pixel face keeps about 8 pixels across, too few to
recognise anyone), every tracked face that matched nobody is additionally pixelated, and only
the faces of alerts are drawn sharp, boxed and named. ``background_blur=0`` keeps the scene
sharp and blurs only the tracked faces.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

ALERT_COLOUR = (255, 40, 40)  # RGB
FACE_COLOUR = (200, 200, 200)


def pixelate(img: np.ndarray, box, blocks: int = 6) -> None:
    """Pixelate (in place) a box, grown by 30%, to ``blocks`` x ``blocks`` cells."""
    h, w = img.shape[:2]
    l, t, r, b = (float(v) for v in box)
    gw, gh = 0.3 * (r - l), 0.3 * (b - t)
    l, t, r, b = int(max(0, l - gw)), int(max(0, t - gh * 1.3)), int(min(w, r + gw)), int(min(h, b + gh))
    if r - l < 2 or b - t < 2:
        return
    roi = img[t:b, l:r]
    small = cv2.resize(roi, (blocks, blocks), interpolation=cv2.INTER_AREA)
    img[t:b, l:r] = cv2.resize(small, (r - l, b - t), interpolation=cv2.INTER_NEAREST)


def blur_frame(img: np.ndarray, factor: int = 16) -> np.ndarray:
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _grow(box, w, h, g=0.15):
    l, t, r, b = (float(v) for v in box)
    gw, gh = g * (r - l), g * (b - t)
    return int(max(0, l - gw)), int(max(0, t - gh)), int(min(w, r + gw)), int(min(h, b + gh))


def annotate_frame(rgb: np.ndarray, faces, background_blur: int = 16) -> np.ndarray:
    """``faces``: (box, label or None); a label marks an alert (drawn sharp), None a bystander."""
    h, w = rgb.shape[:2]
    out = blur_frame(rgb, background_blur) if background_blur and background_blur > 1 else rgb.copy()
    for box, label in faces:
        if label is None:
            pixelate(out, box)
    for box, label in faces:
        if label is None:
            continue
        l, t, r, b = _grow(box, w, h)
        out[t:b, l:r] = rgb[t:b, l:r]
        cv2.rectangle(out, (l, t), (r, b), ALERT_COLOUR, max(2, w // 640))
        scale = max(0.5, w / 1280)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1 + int(scale))
        y = max(th + 4, t - 4)
        cv2.rectangle(out, (l, y - th - 4), (l + tw + 4, y + base - 2), ALERT_COLOUR, -1)
        cv2.putText(out, label, (l + 2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1 + int(scale),
                    cv2.LINE_AA)
    return out


class Annotator:
    """Writes the annotated frames of one camera to a video file (mp4v)."""

    def __init__(self, path: str | Path, fps: float = 25.0, policy=None, background_blur: int = 16):
        self.path = Path(path)
        self.fps = fps
        self.policy = policy
        self.background_blur = background_blur
        self.writer: cv2.VideoWriter | None = None
        self.frames = 0

    def _open(self, w: int, h: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() in (".mp4", ".m4v", ".mov") else "MJPG"))
        self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (w, h))
        if not self.writer.isOpened():
            raise OSError(f"{self.path}: cannot write a video here")

    def write(self, rgb: np.ndarray, tracks, t: float) -> None:
        faces = []
        for tr in tracks:
            box = tr.predict(t)
            alerts = tr.alerts
            label = None
            if alerts:
                a = min(alerts.values(), key=lambda a: a.distance)
                label = f"{a.name} {a.distance:.2f}"
            faces.append((box, label))
        out = annotate_frame(rgb, faces, self.background_blur)
        if self.writer is None:
            self._open(rgb.shape[1], rgb.shape[0])
        self.writer.write(cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
