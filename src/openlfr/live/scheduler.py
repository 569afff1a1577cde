"""Where and when the detector runs on a live frame: the main lever for speed.

A face detector over a whole 1080p frame costs far more than a frame interval (dlib's HOG:
~0.3 s at 1920x1080 finding faces of 80 px and up; RetinaFace, the default: about as much at
0.67 of the frame, finding faces of ~24 px; the MMOD CNN: over 1 s). So a camera does not
detect everywhere on every frame (each detector's scale, window size and floors: ``PROFILES``):

- **full scans** every ``every`` frames, of the frame (or of its zone of recognition ``roi``),
  resized by ``scale``. The scale and the detector's ``upsample`` set the smallest face a scan
  finds: 80 px / (scale x 2^upsample) for HOG. ``scale=0`` (automatic) enlarges small frames
  until faces of ``min_face_px`` would be found, within a budget of ``scan_pixels`` scanned
  pixels (so a 640x360 frame is scanned at 3x, finding faces of ~27 px, and a 1920x1080 frame
  as it is, finding faces of 80 px and up);
- **track windows** every ``track_every`` frames in between: around the predicted box of each
  live track, a window 2.4x the face, resized so the face is about ``track_face_px`` wide
  (within what the detector finds), so a track is followed at the detector's best scale for a
  few milliseconds, whatever the face's size;
- **nothing** on the other frames: the tracker predicts (constant velocity).

Between two full scans, a scan only looks where the picture *changed* since the previous scan
(``motion``: the difference of 1/8-size grey frames, dilated by about a face, split into
connected regions): people who walk in are found, static background (ceilings, walls, an
empty floor) is not scanned again and again. Every ``full_every`` frames the whole zone is
scanned whatever moved (someone standing still). A detector that ``accepts_grey`` (the engine's
``HogDetector``: dlib's HOG takes the strongest gradient of the three colour channels on RGB
input, grey is ~20% cheaper for the same faces) is given the grey frame.

Boxes are mapped back to full-frame coordinates, so landmarks, chips and quality are computed
at full resolution. ``searched`` tells the tracker where the detector looked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from ..engine.detection import CONTAIN, Detection
from ..engine.detection import nms as box_nms
from .tracker import iou_matrix

HOG_WINDOW = 80  # dlib's frontal HOG and MMOD find faces of about 80 px at upsample 0


@dataclass(frozen=True)
class Profile:
    """A detector's scheduling defaults: ``window``, the smallest face (px, dlib-style box) it
    finds at scale 1; ``track_face_px``, the face width the windows around tracks are scaled to;
    ``scan_pixels``, the most pixels a full scan looks at (its cost)."""

    window: int
    track_face_px: int
    scan_pixels: int
    min_face: int | None = None
    window_start: float | None = None  # least score of a window detection that starts a track


# RetinaFace: on the marked crowd frames (tests/data/crowd_walk_boxes.xml) a 1080p frame scanned
# at 0.67 finds 122 of 124 faces, all of those under 32 px among them (0.5: 108; docs/live.md);
# faces of 16 px at scale 1, so the default min_face_px of 24 gives that 0.67. Windows around
# tracks: a face of ~56 px sits in RetinaFace's best range, in a window of ~135 px. Faces under
# 20 px (the far door's passers-by) are not tracked: no chip made from them can be recognised.
# In the windows RetinaFace runs at a lower threshold (0.3, config.window_score_threshold) to keep
# turned faces; a window detection starts a track of its own only at 0.9 and above (the hair
# above a tracked face scores 0.5-0.8 there; a new face is found by the next scan anyway).
PROFILES = {
    "hog": Profile(HOG_WINDOW, 90, 1920 * 1080),
    "cnn": Profile(HOG_WINDOW, 90, 1920 * 1080),
    "retina": Profile(16, 56, 1920 * 1080, 20, 0.9),
}


@dataclass
class DetectStep:
    kind: str  # "scan" | "windows" | "none"
    detections: list[Detection]
    searched: list[tuple[float, float, float, float]]  # regions looked at (full-frame pixels)
    pixels: int = 0  # pixels the detector saw (after scaling), a measure of the work
    # detections scoring below this (found in track windows, at a lower threshold) may continue a
    # track but not start one: hair or a hand beside a tracked face would become "faces seen"
    start_score: float | None = None


def _resize(img: np.ndarray, s: float) -> np.ndarray:
    if abs(s - 1.0) < 1e-3:
        return np.ascontiguousarray(img)
    h, w = img.shape[:2]
    size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)


class DetectionScheduler:
    def __init__(
        self,
        detector,
        every: int = 0,
        track_every: int = 2,
        scale: float = 0.0,
        scan_pixels: int = 1920 * 1080,
        min_face_px: int = 24,
        upsample: int = 0,
        track_face_px: int = 90,
        min_face: int | None = None,
        roi: tuple[float, float, float, float] | None = None,
        fps: float = 25.0,
        window: int = HOG_WINDOW,
        motion: bool = True,
        full_every: int = 0,
        window_threshold: float | None = None,
        window_start: float | None = None,
    ):
        """``detector``: an engine detector (``engine.detection.make_detector``, ``FaceEngine.detector``):
        ``detect(image) -> list[Detection]``, ``detect(image, threshold)`` when ``window_threshold``
        is given, ``detect_batch`` used when present, grey frames when it ``accepts_grey``."""
        self.detector = detector
        self.every = every if every > 0 else max(1, int(round(fps / 2)))
        self.motion = motion
        self.window_threshold = window_threshold  # detector threshold in track windows (None: the detector's)
        self.window_start = window_start  # least score of a window detection that starts a track (None: any)

        self.full_every = full_every if full_every > 0 else max(self.every, int(round(2 * fps)))
        self.track_every = track_every
        self.scale = scale
        self.scan_pixels = scan_pixels
        self.min_face_px = min_face_px
        self.upsample = upsample
        self.track_face_px = track_face_px
        self.min_face = min_face
        self.roi = roi
        self.window = window
        self.scans = 0
        self.window_runs = 0
        self._last_scan: int | None = None
        self._count = 0  # frames seen by step()
        self._last_full: int | None = None
        self._ref: np.ndarray | None = None  # 1/8-size grey frame at the previous scan
        self.scanned_px = 0
        self.window_px = 0
        self.scan_cpu_s = 0.0  # CPU time of this thread in scans and in track windows
        self.window_cpu_s = 0.0

    def scan_scale(self, width: int, height: int) -> float:
        if self.scale > 0:
            return self.scale
        if self.roi is not None:
            width, height = width * (self.roi[2] - self.roi[0]), height * (self.roi[3] - self.roi[1])
        want = self.window / (self.min_face_px * 2 ** self.upsample)
        budget = (self.scan_pixels / max(width * height, 1.0)) ** 0.5
        return float(min(want, budget))

    def smallest_face(self, width: int, height: int) -> float:
        """The smallest face (full-frame px) a full scan finds."""
        return self.window / (self.scan_scale(width, height) * 2 ** self.upsample)

    def _roi_px(self, shape) -> tuple[int, int, int, int]:
        h, w = shape[:2]
        if self.roi is None:
            return 0, 0, w, h
        l, t, r, b = self.roi
        return int(l * w), int(t * h), int(round(r * w)), int(round(b * h))

    def _run(self, img: np.ndarray, region: tuple[int, int, int, int], s: float,
             threshold: float | None = None) -> tuple[list[Detection], int]:
        l, t, r, b = region
        crop = _resize(img[t:b, l:r], s)
        if crop.shape[0] < 20 or crop.shape[1] < 20:
            return [], 0
        found = self.detector.detect(crop) if threshold is None else self.detector.detect(crop, threshold)
        return [d.mapped(1 / s, l, t) for d in found], crop.shape[0] * crop.shape[1]

    def _run_many(self, img: np.ndarray, jobs, threshold: float | None = None) -> tuple[list[Detection], int]:
        """Several (region, scale) at once: one batched call when the detector has ``detect_batch``
        (RetinaFace: the windows around tracks are of about one size, so padding costs little)."""
        batch = getattr(self.detector, "detect_batch", None)
        if batch is None or len(jobs) < 2:
            dets, px = [], 0
            for region, s in jobs:
                found, n = self._run(img, region, s, threshold)
                dets += found
                px += n
            return dets, px
        crops, keep = [], []
        for (l, t, r, b), s in jobs:
            crop = _resize(img[t:b, l:r], s)
            if crop.shape[0] >= 20 and crop.shape[1] >= 20:
                crops.append(crop)
                keep.append(((l, t), s))
        if not crops:
            return [], 0
        dets = []
        found_all = batch(crops) if threshold is None else batch(crops, threshold)  # (as _run: the CNN takes none)
        for found, ((l, t), s) in zip(found_all, keep):
            dets += [d.mapped(1 / s, l, t) for d in found]
        return dets, sum(c.shape[0] * c.shape[1] for c in crops)

    def due_scan(self, index: int) -> bool:
        return self._last_scan is None or index - self._last_scan >= self.every

    def step(self, rgb: np.ndarray, index: int | None, predicted: list[np.ndarray], grey: np.ndarray | None = None) -> DetectStep:
        """Detect on this frame according to the schedule; ``predicted``: live tracks' boxes now.

        The schedule counts the frames given to ``step`` (``index=None``; pass an index only to
        impose one). Frames a live source dropped under load are not counted: an overloaded
        camera scans less often per second instead of spending its time scanning and dropping
        ever more frames.
        """
        if index is None:
            index = self._count
        self._count = index + 1
        h, w = rgb.shape[:2]
        img = rgb
        if getattr(self.detector, "accepts_grey", False):
            img = grey if grey is not None else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        c0 = time.thread_time()
        if self.due_scan(index):
            self._last_scan = index
            self.scans += 1
            regions = self._scan_regions(img, index)
            s = self.scan_scale(w, h)
            dets, px = [], 0
            for region in regions:
                found, n = self._run(img, region, s)
                dets += found
                px += n
            self.scanned_px += px
            self.scan_cpu_s += time.thread_time() - c0
            return DetectStep("scan", self._filter(dets), [tuple(map(float, r)) for r in regions], px)
        if predicted and index % self.track_every == 0:
            self.window_runs += 1
            jobs = self._windows(predicted, w, h)
            dets, px = self._run_many(img, jobs, self.window_threshold)
            searched = [tuple(map(float, win)) for win, _ in jobs]
            self.window_px += px
            self.window_cpu_s += time.thread_time() - c0
            return DetectStep("windows", self._filter(dets), searched, px, self.window_start)
        return DetectStep("none", [], [], 0)

    def _scan_regions(self, img: np.ndarray, index: int) -> list[tuple[int, int, int, int]]:
        """The zone, or only the parts of it that changed since the previous scan."""
        zone = self._roi_px(img.shape)
        if not self.motion:
            return [zone]
        h, w = img.shape[:2]
        grey = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        small = cv2.GaussianBlur(cv2.resize(grey, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA),
                                 (5, 5), 0)
        ref, self._ref = self._ref, small
        if ref is None or ref.shape != small.shape or self._last_full is None or index - self._last_full >= self.full_every:
            self._last_full = index
            return [zone]
        moving = (cv2.absdiff(small, ref) > 12).astype(np.uint8)
        # grow by about a face at the smallest size found (a face moving a little changes
        # only its edges), and join nearby blobs
        grow = max(3, int(round(2 * self.smallest_face(w, h) / 8)))
        moving = cv2.dilate(moving, np.ones((grow, grow), np.uint8))
        n, _, stats, _ = cv2.connectedComponentsWithStats(moving, connectivity=8)
        zl, zt, zr, zb = zone
        regions = []
        for i in range(1, n):
            x, y, bw, bh, _area = stats[i]
            l, t, r, b = max(zl, x * 8), max(zt, y * 8), min(zr, (x + bw) * 8), min(zb, (y + bh) * 8)
            if r - l >= 16 and b - t >= 16:
                regions.append((l, t, r, b))
        area = sum((r - l) * (b - t) for l, t, r, b in regions)
        if area > 0.7 * (zr - zl) * (zb - zt):
            return [zone]
        return regions

    def _windows(self, predicted, w: int, h: int):
        """(window, scale) per predicted box; windows that overlap much are merged."""
        wins = []
        for box in predicted:
            l, t, r, b = (float(v) for v in box)
            size = max(r - l, b - t, 8.0)
            cx, cy = (l + r) / 2, (t + b) / 2
            half = 1.2 * size
            win = [max(0, int(cx - half)), max(0, int(cy - half)), min(w, int(cx + half)), min(h, int(cy + half))]
            if win[2] - win[0] < 8 or win[3] - win[1] < 8:
                continue
            s = float(np.clip(self.track_face_px / size, 0.25, 3.0))
            wins.append((win, s, size))
        merged = True
        while merged and len(wins) > 1:  # merge windows of similar scale that overlap a lot
            merged = False
            boxes = np.array([wi[0] for wi in wins], float)
            iou = iou_matrix(boxes, boxes)
            np.fill_diagonal(iou, 0)
            i, j = np.unravel_index(np.argmax(iou), iou.shape)
            if iou[i, j] > 0.3 and max(wins[i][1], wins[j][1]) / min(wins[i][1], wins[j][1]) < 1.5:
                a, b = wins[i][0], wins[j][0]
                union = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                size = min(wins[i][2], wins[j][2])
                s = float(np.clip(self.track_face_px / size, 0.25, 3.0))
                wins = [wi for k, wi in enumerate(wins) if k not in (i, j)] + [(union, s, size)]
                merged = True
        return [(tuple(wi[0]), wi[1]) for wi in wins]

    def _filter(self, dets: list[Detection]) -> list[Detection]:
        if self.min_face:
            dets = [d for d in dets if min(d.width, d.height) >= self.min_face]
        if len(dets) > 1:
            boxes = np.array([d.box for d in dets], float)
            boxes[:, 2:] += 1  # inclusive -> exclusive edges
            keep = box_nms(boxes, np.array([d.score for d in dets], float), 0.4, CONTAIN)
            dets = [dets[i] for i in keep]
        return dets
