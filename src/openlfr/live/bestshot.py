"""Best shots per track and the track template fused from them.

Not every frame of a face is embedded: each detection is aligned and scored for quality
(engine/quality.py: size, sharpness, pose, detector confidence), and a face is embedded only
when it earns a place among the track's ``k`` best shots:

- the first face of a track is embedded at once (an alert should not wait);
- while fewer than ``k`` shots are kept, another is embedded every ``min_gap_frames`` frames
  (frames close together are near-duplicates);
- once ``k`` are kept, a face is embedded only if its quality beats the worst kept shot by
  ``min_gain``; it then replaces that shot.

The template is the quality-weighted mean of the kept descriptors (and ``second_template`` that
of the second model's unit features, brought back to unit length). dlib's descriptors are not
unit-normalised (their norms carry no identity information the metric relies on, and the
threshold was set on raw descriptors), so the mean is not renormalised either: a weighted mean of
raw descriptors is what the Euclidean threshold expects. Each change of the template bumps
``version``, and the runner repeats the watchlist search for it.

Privacy: shots (chips and descriptors) live in the track's memory only and go with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Shot:
    quality: float
    descriptor: np.ndarray = field(repr=False)  # (128,) float32
    frame: int = 0
    time: float = 0.0
    box: tuple[int, int, int, int] = (0, 0, 0, 0)
    chip: np.ndarray | None = field(default=None, repr=False)  # 150x150 RGB, memory only
    second: np.ndarray | None = field(default=None, repr=False)  # (128,) the second model's feature, memory only


def quality_bound(box_width: float, detector_score: float) -> float:
    """An upper bound of a face's quality score before aligning it.

    Quality (engine/quality.py) is a weighted geometric mean of size, sharpness, pose and the
    detector's confidence; size and confidence are known from the box (the inter-ocular distance
    of a frontal face is about 0.4 of the box width: 0.45 is taken to stay above), sharpness and
    pose are taken at their best (1). A face whose bound cannot earn a place among the best shots
    is not aligned at all.
    """
    import math

    from ..engine.quality import WEIGHTS

    iod = 0.45 * float(box_width)
    size = min(max((iod - 8.0) / 32.0, 1e-3), 1.0)
    det = 1.0 / (1.0 + math.exp(-2.0 * float(detector_score)))
    return math.exp(WEIGHTS["size"] * math.log(size) + WEIGHTS["detector"] * math.log(max(det, 1e-3)))


def fuse(descriptors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of raw descriptors (N, D) -> (D,); equal weights when all are ~0."""
    d = np.asarray(descriptors, np.float32).reshape(len(descriptors), -1)
    w = np.asarray(weights, np.float64).reshape(-1)
    if len(d) == 0:
        raise ValueError("nothing to fuse")
    if len(w) != len(d):
        raise ValueError(f"{len(d)} descriptors but {len(w)} weights")
    w = np.clip(w, 0, None)
    if w.sum() <= 1e-12:
        w = np.ones_like(w)
    return (w[:, None] * d).sum(axis=0).astype(np.float32) / np.float32(w.sum())


class BestShots:
    def __init__(self, k: int = 3, min_gain: float = 0.05, min_gap_frames: int = 3):
        self.k = k
        self.min_gain = min_gain
        self.min_gap_frames = min_gap_frames
        self.shots: list[Shot] = []
        self.version = 0
        self.embedded = 0  # faces embedded for this track (a measure of the work done)
        self.pending = 0  # embeddings submitted, result not back yet
        self._last_frame: int | None = None
        self._template: np.ndarray | None = None

    def wants(self, quality: float, frame: int) -> bool:
        """Should a face of this quality, seen at this frame, be embedded?"""
        if self.pending:
            return False
        if not self.shots:
            return self._last_frame is None or frame != self._last_frame
        if self._last_frame is not None and frame - self._last_frame < self.min_gap_frames:
            return False
        if len(self.shots) < self.k:
            return True
        return quality > min(s.quality for s in self.shots) + self.min_gain

    def reserve(self, frame: int) -> None:
        """A face of this frame is being embedded (asynchronously): no other until its result."""
        self._last_frame = frame
        self.pending += 1

    def add(self, shot: Shot) -> bool:
        """Keep the shot if it is among the k best; True when the template changed."""
        self.embedded += 1
        self.pending = max(0, self.pending - 1)
        self._last_frame = shot.frame
        if len(self.shots) >= self.k:
            worst = min(range(len(self.shots)), key=lambda i: self.shots[i].quality)
            if shot.quality <= self.shots[worst].quality:
                return False
            self.shots.pop(worst)
        self.shots.append(shot)
        self._template = None
        self.version += 1
        return True

    def absorb(self, other: "BestShots") -> None:
        """Take another track's shots (same person), keeping the k best."""
        for s in sorted(other.shots, key=lambda s: -s.quality):
            self.embedded -= 1  # add() counts; these were counted already
            self.add(s)
        self.embedded += other.embedded

    @property
    def template(self) -> np.ndarray | None:
        if not self.shots:
            return None
        if self._template is None:
            self._template = fuse(np.stack([s.descriptor for s in self.shots]), np.array([s.quality for s in self.shots]))
        return self._template

    @property
    def second_template(self) -> np.ndarray | None:
        """Quality-weighted mean of the kept shots' second-model features (unit length), or None."""
        have = [s for s in self.shots if s.second is not None and np.isfinite(s.second).all()]
        if not have:
            return None
        t = fuse(np.stack([s.second for s in have]), np.array([s.quality for s in have]))
        return t / max(float(np.linalg.norm(t)), 1e-12)

    @property
    def best(self) -> Shot | None:
        return max(self.shots, key=lambda s: s.quality) if self.shots else None

    @property
    def quality(self) -> float:
        return max((s.quality for s in self.shots), default=0.0)

    def clear(self) -> None:
        """Forget every shot (chips and descriptors): the track has ended."""
        for s in self.shots:
            s.chip = None
            s.second = None
        self.shots.clear()
        self._template = None
