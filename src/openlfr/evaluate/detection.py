"""Face detection accuracy on marked boxes: precision, recall and AP at IoU 0.5, by face size.

An LFR system cannot identify a face it never finds, so the detector's recall caps every other
figure. Ground truth is dlib's imglab XML (``<image file=...><box top left width height
[ignore='1']/>``), as in ../shared/data/detection and ``tests/data/crowd_walk_boxes.xml``; a
``file`` of the form ``frame:N`` is the N-th frame of a video given as ``images``.

Matching (PASCAL VOC / COCO style): per image, detections in descending score each take the
unmatched marked box of highest IoU >= 0.5; a detection that matches a box marked ``ignore`` is
neither right nor wrong; an unmatched detection is a false positive; an unmatched (not ignored)
box is a miss. By size band (box width: < 32, 32-64, 64-128, > 128 px), as COCO does by area:
marked boxes outside the band are treated as ignored, and unmatched detections outside it are
not counted. AP is the area under the precision/recall curve of all detections ranked by score
(all-point interpolation), so it reaches only as far as the detector's own threshold.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.detection import Detection, iou

IOU = 0.5
BANDS = (("<32", 0, 32), ("32-64", 32, 64), ("64-128", 64, 128), (">128", 128, 10**9))


class BoxesError(ValueError):
    """The ground-truth file cannot be read."""


@dataclass(frozen=True)
class Marked:
    box: tuple[int, int, int, int]  # inclusive, dlib convention
    ignore: bool = False
    label: str = ""

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0] + 1


def read_boxes(path: str | Path) -> dict[str, list[Marked]]:
    """imglab XML -> {file: [Marked]} in file order (images without boxes kept: no face there)."""
    p = Path(path)
    try:
        root = ET.parse(p).getroot()
    except (OSError, ET.ParseError) as e:
        raise BoxesError(f"{p}: cannot read the boxes ({e})") from None
    images = root.find("images")
    if images is None:
        raise BoxesError(f"{p}: no <images> element (dlib imglab format expected)")
    out: dict[str, list[Marked]] = {}
    for im in images.findall("image"):
        name = im.get("file")
        if not name:
            raise BoxesError(f"{p}: an <image> without a file attribute")
        boxes = []
        for b in im.findall("box"):
            try:
                t, l, w, h = (int(b.get(k)) for k in ("top", "left", "width", "height"))
            except (TypeError, ValueError):
                raise BoxesError(f"{p}: a box of {name} lacks top/left/width/height integers") from None
            if w <= 0 or h <= 0:
                raise BoxesError(f"{p}: a box of {name} has no area")
            label = b.findtext("label") or ""
            boxes.append(Marked((l, t, l + w - 1, t + h - 1), b.get("ignore", "0") not in ("0", ""), label))
        out.setdefault(name, []).extend(boxes)
    return out


def match(dets: list[Detection], marked: list[Marked], lo: float = 0, hi: float = 10**9, thr: float = IOU):
    """(score, outcome) per counted detection (outcome 1 right, 0 wrong) and the number of marked
    faces in the band [lo, hi) that count (not ignored)."""
    in_band = [lo <= m.width < hi and not m.ignore for m in marked]
    taken = [False] * len(marked)
    out = []
    for d in sorted(dets, key=lambda d: -d.score):
        ious = [iou(d.box, m.box) for m in marked]
        counted = [i for i in range(len(marked)) if in_band[i] and not taken[i] and ious[i] >= thr]
        if counted:  # the free counted face it overlaps most
            taken[max(counted, key=lambda i: ious[i])] = True
            out.append((d.score, 1))
        elif any(v >= thr and not in_band[i] for i, v in enumerate(ious)):
            continue  # on an ignored face or one outside the band: not counted
        elif lo <= d.width < hi:
            out.append((d.score, 0))
    return out, sum(in_band)


def average_precision(outcomes: list[tuple[float, int]], positives: int) -> float:
    """VOC all-point interpolated AP of ranked outcomes; nan without positives."""
    if positives == 0:
        return float("nan")
    if not outcomes:
        return 0.0
    o = np.array([x for _, x in sorted(outcomes, key=lambda t: -t[0])], float)
    tp = np.cumsum(o)
    recall = tp / positives
    precision = tp / np.arange(1, len(o) + 1)
    mrec = np.concatenate([[0.0], recall, [recall[-1]]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def summarise(per_image: list[tuple[list[Detection], list[Marked]]], lo: float = 0, hi: float = 10**9) -> dict:
    outcomes, positives = [], 0
    for dets, marked in per_image:
        o, n = match(dets, marked, lo, hi)
        outcomes += o
        positives += n
    tp = sum(x for _, x in outcomes)
    return {
        "faces": positives,
        "found": tp,
        "false": len(outcomes) - tp,
        "recall": round(tp / positives, 4) if positives else None,
        "precision": round(tp / len(outcomes), 4) if outcomes else None,
        "ap": None if positives == 0 else round(average_precision(outcomes, positives), 4),
    }


def load_frames(images: Path, names: list[str]):
    """Yield (name, RGB) for each name: files under ``images``, or ``frame:N`` of a video."""
    import cv2

    from ..engine.images import load_image

    if images.is_dir():
        for n in names:
            yield n, load_image(images / n)
        return
    want = {}
    for n in names:
        if not n.startswith("frame:"):
            raise BoxesError(f"{images} is a video: image names must be frame:N, not {n!r}")
        want[int(n.split(":", 1)[1])] = n
    cap = cv2.VideoCapture(str(images))
    if not cap.isOpened():
        raise BoxesError(f"{images}: not a folder and not a readable video")
    i, last = 0, max(want) if want else -1
    try:
        while i <= last:
            ok, frame = cap.read()
            if not ok:
                raise BoxesError(f"{images}: has no frame {i} (the boxes name frames up to {last})")
            if i in want:
                yield want[i], cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            i += 1
    finally:
        cap.release()


def evaluate_detection(images: Path, boxes: Path, detectors: dict[str, object]) -> dict:
    """Per detector (name -> object with ``detect(rgb)``): overall and per-band figures, time per
    megapixel (wall time of ``detect`` alone, summed over the images)."""
    truth = read_boxes(boxes)
    frames = list(load_frames(Path(images), list(truth)))
    out = {"boxes": str(boxes), "images": len(frames), "iou": IOU,
           "faces": sum(not m.ignore for ms in truth.values() for m in ms),
           "ignored": sum(m.ignore for ms in truth.values() for m in ms),
           "megapixels": round(sum(f.shape[0] * f.shape[1] for _, f in frames) / 1e6, 3), "detectors": {}}
    for name, det in detectors.items():
        det.detect(frames[0][1])  # warm up (sessions, caches)
        per_image, seconds = [], 0.0
        for n, rgb in frames:
            t = time.perf_counter()
            found = det.detect(rgb)
            seconds += time.perf_counter() - t
            per_image.append((found, truth[n]))
        res = summarise(per_image)
        res["by_size"] = {b: summarise(per_image, lo, hi) for b, lo, hi in BANDS}
        res["seconds"] = round(seconds, 3)
        res["s_per_megapixel"] = round(seconds / max(out["megapixels"], 1e-9), 4)
        out["detectors"][name] = res
    return out
