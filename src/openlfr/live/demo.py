"""``openlfr demo``: a zero-set-up scenario from sample images that installed packages ship.

- The **watchlist** holds one subject, Eileen Collins, enrolled from a *differently processed*
  copy of scikit-image's ``astronaut`` photo: a tighter crop, desaturated, darker (gamma),
  smaller, and JPEG-compressed, as a reference photo from another source would be.
- The **video** (960x540, 25 fps, 4 s) shows two people walking past a camera in a corridor:
  Collins (from the original colour photo) and Grace Hopper (matplotlib's ``grace_hopper.jpg``,
  who is *not* on the watchlist), each scaled as they approach, moving, slightly rotated.
- Running it must give exactly one alert (Collins) and none for Hopper, whose face is seen,
  tracked and forgotten.

Nothing is downloaded; the files are made in a temporary folder and deleted afterwards
unless ``keep`` names a folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SIZE = (960, 540)
FPS = 25.0
FRAMES = 100
SUBJECT_ID = "eileen-collins"


@dataclass
class DemoScenario:
    watchlist: Path
    video: Path
    expected_subject: str = SUBJECT_ID
    bystander: str = "Grace Hopper (not on the watchlist)"


def sample_faces() -> tuple[np.ndarray, np.ndarray]:
    """(Eileen Collins, Grace Hopper) as RGB uint8, from scikit-image and matplotlib."""
    from ..engine.samples import astronaut, grace_hopper

    return astronaut(), grace_hopper()


# head-and-shoulders boxes (l, t, r, b) in the sample images, around the faces dlib finds at
# (175, 76, 265, 166) in astronaut and (180, 139, 366, 325) in grace_hopper
COLLINS_HEAD = (110, 10, 335, 250)
HOPPER_HEAD = (90, 40, 460, 450)


def reference_photo(collins: np.ndarray) -> np.ndarray:
    """Collins as a watchlist reference from 'another source': tighter crop, desaturated,
    darker, smaller, JPEG-compressed."""
    l, t, r, b = 140, 40, 300, 205
    ref = collins[t:b, l:r].astype(np.float32)
    grey = ref.mean(axis=2, keepdims=True)
    ref = 0.4 * ref + 0.6 * grey  # mostly grey
    ref = 255.0 * (ref / 255.0) ** 1.3  # darker
    ref = cv2.resize(np.clip(ref, 0, 255).astype(np.uint8), (128, 132), interpolation=cv2.INTER_AREA)
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(ref, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 55])
    return cv2.cvtColor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def background(w: int = SIZE[0], h: int = SIZE[1]) -> np.ndarray:
    """A plain corridor: a lit back wall, a floor, columns on both sides."""
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    wall = 170 + 40 * np.exp(-((x - 0.5) ** 2) / 0.08) - 30 * y
    img = np.repeat(wall[:, :, None], 3, axis=2) * np.array([1.0, 0.96, 0.9], np.float32)
    img[int(0.72 * h):] *= 0.7  # floor
    for cx in (0.06, 0.18, 0.82, 0.94):
        l, r = int((cx - 0.03) * w), int((cx + 0.03) * w)
        img[:, l:r] = img[:, l:r] * 0.55 + 20
    rng = np.random.default_rng(0)
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _sprite(img: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
    l, t, r, b = box
    sp = img[t:b, l:r]
    hh, ww = sp.shape[:2]
    yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float32)
    # feathered ellipse: head and shoulders, soft edges
    d = ((xx - ww / 2) / (0.5 * ww)) ** 2 + ((yy - hh / 2) / (0.55 * hh)) ** 2
    alpha = np.clip((1.0 - d) / 0.15, 0, 1)
    return sp, alpha


def _paste(frame: np.ndarray, sprite: np.ndarray, alpha: np.ndarray, cx: float, cy: float, scale: float, angle: float):
    hh, ww = sprite.shape[:2]
    m = cv2.getRotationMatrix2D((ww / 2, hh / 2), angle, scale)
    m[0, 2] += cx - ww / 2
    m[1, 2] += cy - hh / 2
    h, w = frame.shape[:2]
    warped = cv2.warpAffine(sprite, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)[:, :, None]
    frame[:] = (frame * (1 - a) + warped * a).astype(np.uint8)


def walk(t: float, start: tuple[float, float], end: tuple[float, float], s0: float, s1: float):
    """Position, scale and a slight sway (degrees) at fraction t of a walk."""
    x = start[0] + (end[0] - start[0]) * t
    y = start[1] + (end[1] - start[1]) * t + 4 * math.sin(8 * math.pi * t)  # steps
    return x, y, s0 + (s1 - s0) * t, 4.0 * math.sin(2 * math.pi * t)


def render_video(path: Path, collins: np.ndarray, hopper: np.ndarray, frames: int = FRAMES) -> Path:
    w, h = SIZE
    bg = background(w, h)
    c_sp, c_a = _sprite(collins, COLLINS_HEAD)
    h_sp, h_a = _sprite(hopper, HOPPER_HEAD)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: cannot write the demo video")
    for i in range(frames):
        frame = bg.copy()
        tc = i / (frames * 0.7)  # Collins: frames 0-70, left to right, coming closer
        if 0 <= tc <= 1:
            x, y, s, a = walk(tc, (0.15 * w, 0.45 * h), (0.6 * w, 0.5 * h), 0.75, 1.0)
            _paste(frame, c_sp, c_a, x, y, s, a)
        th = (i - frames * 0.3) / (frames * 0.7)  # Hopper: frames 30-100, right to left
        if 0 <= th <= 1:
            x, y, s, a = walk(th, (0.85 * w, 0.45 * h), (0.35 * w, 0.5 * h), 0.45, 0.6)
            _paste(frame, h_sp, h_a, x, y, s, -a)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def build_demo(folder: str | Path) -> DemoScenario:
    """Write the demo's watchlist folder and video into ``folder``."""
    folder = Path(folder)
    wl = folder / "watchlist"
    wl.mkdir(parents=True, exist_ok=True)
    collins, hopper = sample_faces()
    ref = reference_photo(collins)
    cv2.imwrite(str(wl / f"{SUBJECT_ID}.jpg"), cv2.cvtColor(ref, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    video = render_video(folder / "walk_past.mp4", collins, hopper)
    return DemoScenario(wl, video)
