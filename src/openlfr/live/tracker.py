"""Face tracking: detections associated across frames by position/motion and appearance.

Why our own (about 200 lines) rather than a tracking library: the libraries that fit 2-D boxes
(norfair, ByteTrack in ``supervision``, BoxMOT, motpy) either bring a deep-learning stack
(BoxMOT: torch), or count absence in *frames* of a detector that runs on every frame; here the
detector runs on a schedule (full-frame scans every few frames, windows around tracks in
between, frames dropped under load), so a track's absence must be measured in *seconds* of
media time and a frame where a track was not looked for must not count against it. We also
need two appearance cues that those libraries do not have together: a cheap colour histogram
for every detection, and the 128-D face descriptor of a track's best shots, used to continue
a track that the motion model lost (so a person counts once in "faces seen"). The pieces that
are worth borrowing are small: constant-velocity prediction, an IoU/centre gate and the
Hungarian assignment (``scipy.optimize.linear_sum_assignment``).

Privacy: tracks are in memory only and are dropped (with their shots and templates) when they end.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

if TYPE_CHECKING:
    from .alerts import Alert
    from .bestshot import BestShots

BIG = 1e6


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes (N, 4) and (M, 4) given as (l, t, r, b)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, thresh: float = 0.4) -> list[int]:
    """Indices kept by greedy non-maximum suppression (highest score first)."""
    order = list(np.argsort(-np.asarray(scores)))
    keep: list[int] = []
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if order:
            ious = iou_matrix(boxes[i : i + 1], boxes[order])[0]
            order = [j for j, o in zip(order, ious) if o < thresh]
    return keep


def colour_histogram(rgb: np.ndarray, box) -> np.ndarray | None:
    """Normalised hue/saturation histogram (8x8) of a face box: the cheap appearance cue."""
    h, w = rgb.shape[:2]
    l, t, r, b = (int(round(v)) for v in box)
    l, t, r, b = max(l, 0), max(t, 0), min(r, w), min(b, h)
    if r - l < 4 or b - t < 4:
        return None
    patch = cv2.resize(rgb[t:b, l:r], (24, 24), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(patch, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [8, 8], [0, 180, 0, 256]).ravel()
    s = hist.sum()
    return (hist / s).astype(np.float32) if s > 0 else None


def hist_distance(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Hellinger distance in [0, 1]; 0.5 (neutral) when either is unknown."""
    if a is None or b is None:
        return 0.5
    return float(np.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(a * b))))))


@dataclass
class TrackedDetection:
    """A detection at full-frame coordinates, as the tracker sees it."""

    box: np.ndarray  # (4,) float l, t, r, b
    score: float
    hist: np.ndarray | None = None
    payload: object = None  # e.g. the aligned Face, for best-shot selection
    starts: bool = True  # may start a new track (False: a weak detection only continues one)


@dataclass(eq=False)
class Track:
    id: int
    camera: str
    box: np.ndarray  # last estimate (l, t, r, b), full-frame pixels
    first_time: float  # media time of its first detection
    first_wall: float  # monotonic clock when its first frame was read (for alert latency)
    last_time: float  # media time of its latest detection
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # px per second for l, t, r, b
    hits: int = 1
    hist: np.ndarray | None = None
    confirmed: bool = False
    last_frame: int = 0
    # what the later stages keep per track (the camera worker), dropped when the track ends:
    shots: BestShots | None = None  # its best shots and their template (None: none yet, or ended)
    band: int | None = None  # worst quality band of the shots kept (None: none kept)
    too_poor: bool = False  # a face of it was below the lowest quality band (not searched)
    nearest: float | None = None  # distance to the nearest subject at its latest search
    alerts: dict[str, Alert] = field(default_factory=dict)  # subject id -> the alert it raised

    def drop_data(self) -> None:
        """Forget the later stages' data (shots, templates, alerts): the track has ended."""
        if self.shots is not None:
            self.shots.clear()
        self.shots, self.band, self.too_poor, self.nearest = None, None, False, None
        self.alerts = {}

    def predict(self, t: float, tau_s: float = 0.3) -> np.ndarray:
        """Constant velocity, damped: a face not seen for a while is not extrapolated far
        (people stop, turn, and a velocity from two noisy boxes is rough); the displacement
        tends to ``velocity x tau_s``."""
        dt = max(t - self.last_time, 0.0)
        return self.box + self.velocity * (tau_s * (1.0 - np.exp(-dt / tau_s)))

    @property
    def size(self) -> float:
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


class Tracker:
    """Tracks of one camera.

    ``update(detections, t, searched)``: ``searched`` is the list of regions (l, t, r, b) that
    the detector looked at in this frame; only tracks whose prediction lies in a searched
    region can be matched. A track ends when it has had no detection for ``max_absence_s``
    seconds of media time, whatever the frame rate or schedule; ``pop_ended`` returns ended tracks
    (the caller drops their data).
    """

    def __init__(
        self,
        camera: str = "0",
        max_absence_s: float = 1.0,
        min_hits: int = 2,
        iou_gate: float = 0.1,
        appearance_weight: float = 0.3,
        id_counter: itertools.count | None = None,
    ):
        self.camera = camera
        self.max_absence_s = max_absence_s
        self.min_hits = min_hits
        self.iou_gate = iou_gate
        self.appearance_weight = appearance_weight
        self.tracks: list[Track] = []
        self._ids = id_counter or itertools.count(1)
        self._ended: list[Track] = []
        self.faces_seen_ended = 0  # confirmed tracks that have ended

    # ------------------------------------------------------------------ association
    def _cost(self, tracks: list[Track], dets: list[TrackedDetection], t: float) -> np.ndarray:
        pred = np.array([tr.predict(t) for tr in tracks]).reshape(-1, 4)
        boxes = np.array([d.box for d in dets], np.float64).reshape(-1, 4)
        iou = iou_matrix(pred, boxes)
        pc = (pred[:, :2] + pred[:, 2:]) / 2
        dc = (boxes[:, :2] + boxes[:, 2:]) / 2
        psize = np.maximum(pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1])
        dsize = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        centre = np.linalg.norm(pc[:, None, :] - dc[None, :, :], axis=2) / np.maximum(psize[:, None], 1.0)
        ratio = np.maximum(psize[:, None], dsize[None, :]) / np.maximum(np.minimum(psize[:, None], dsize[None, :]), 1)
        # A lost track's gate widens with the time since it was seen (it may have moved farther).
        gap = np.array([min(max(t - tr.last_time, 0.0), 1.0) for tr in tracks])
        centre_gate = 0.6 + 0.8 * gap
        motion = 1.0 - iou
        motion = np.where(iou < self.iou_gate, 0.6 + 0.4 * np.minimum(centre / centre_gate[:, None], 1.0), motion)
        gate = ((iou >= self.iou_gate) | (centre < centre_gate[:, None])) & (ratio < 1.8)
        w = self.appearance_weight
        app = np.array([[hist_distance(tr.hist, d.hist) for d in dets] for tr in tracks]).reshape(len(tracks), len(dets))
        cost = (1 - w) * motion + w * app
        return np.where(gate, cost, BIG)

    def update(
        self,
        detections: list[TrackedDetection],
        t: float,
        wall: float,
        frame_index: int = 0,
        searched: list[tuple[float, float, float, float]] | None = None,
    ) -> tuple[list[tuple[Track, TrackedDetection]], list[Track]]:
        """Associate this frame's detections; returns (matched (track, detection) pairs, new tracks)."""
        self._expire(t)
        live = [tr for tr in self.tracks if searched is None or self._inside(tr.predict(t), searched)]
        pairs: list[tuple[Track, TrackedDetection]] = []
        unmatched = list(range(len(detections)))
        if live and detections:
            cost = self._cost(live, detections, t)
            rows, cols = linear_sum_assignment(cost)
            used = set()
            for r, c in zip(rows, cols):
                if cost[r, c] < BIG:
                    pairs.append((live[r], detections[c]))
                    used.add(c)
            unmatched = [i for i in range(len(detections)) if i not in used]
        for tr, d in pairs:
            self._apply(tr, d, t, frame_index)
        new = []
        for i in unmatched:
            d = detections[i]
            if not d.starts:
                continue
            tr = Track(next(self._ids), self.camera, np.asarray(d.box, np.float64), t, wall, t, hist=d.hist,
                       last_frame=frame_index)
            tr.confirmed = self.min_hits <= 1
            self.tracks.append(tr)
            new.append(tr)
            pairs.append((tr, d))
        return pairs, new

    @staticmethod
    def _inside(box: np.ndarray, regions) -> bool:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        return any(l <= cx <= r and t <= cy <= b for l, t, r, b in regions)

    def _apply(self, tr: Track, d: TrackedDetection, t: float, frame_index: int) -> None:
        box = np.asarray(d.box, np.float64)
        dt = t - tr.last_time
        if dt > 1e-6:
            v = (box - tr.box) / dt
            tr.velocity = v if tr.hits == 1 else 0.5 * tr.velocity + 0.5 * v
            # a face does not cross the frame in a blink: clamp absurd speeds (bad matches, jitter)
            lim = 4.0 * max(tr.size, 1.0)
            tr.velocity = np.clip(tr.velocity, -lim, lim)
        tr.box = box
        tr.last_time = t
        tr.last_frame = frame_index
        tr.hits += 1
        if d.hist is not None:
            tr.hist = d.hist if tr.hist is None else 0.7 * tr.hist + 0.3 * d.hist
        if tr.hits >= self.min_hits:
            tr.confirmed = True

    # ------------------------------------------------------------------ lifecycle
    def _expire(self, t: float) -> None:
        keep = []
        for tr in self.tracks:
            if t - tr.last_time > self.max_absence_s:
                self._end(tr)
            else:
                keep.append(tr)
        self.tracks = keep

    def _end(self, tr: Track) -> None:
        if tr.confirmed:
            self.faces_seen_ended += 1
        self._ended.append(tr)

    def advance(self, t: float) -> None:
        """A frame with no detection run: only end tracks whose absence is over."""
        self._expire(t)

    def pop_ended(self) -> list[Track]:
        out, self._ended = self._ended, []
        return out

    def finish(self) -> list[Track]:
        """End every track (end of source or shutdown)."""
        for tr in self.tracks:
            self._end(tr)
        self.tracks = []
        return self.pop_ended()

    def merge(self, keep: Track, other: Track) -> None:
        """``other`` is the same person as ``keep`` (appearance re-identification): one track remains.

        ``keep`` takes the later position and motion; ``other`` disappears without counting as a face.
        """
        if other in self.tracks:
            self.tracks.remove(other)
        if other.last_time >= keep.last_time:
            keep.box, keep.velocity, keep.last_time, keep.last_frame = other.box, other.velocity, other.last_time, other.last_frame
        keep.hits += other.hits
        keep.first_time = min(keep.first_time, other.first_time)
        keep.first_wall = min(keep.first_wall, other.first_wall)
        keep.confirmed = keep.confirmed or other.confirmed or keep.hits >= self.min_hits
        if other.hist is not None:
            keep.hist = other.hist

    @property
    def faces_seen(self) -> int:
        return self.faces_seen_ended + sum(1 for tr in self.tracks if tr.confirmed)

    def predicted_boxes(self, t: float) -> list[tuple[Track, np.ndarray]]:
        return [(tr, tr.predict(t)) for tr in self.tracks]
