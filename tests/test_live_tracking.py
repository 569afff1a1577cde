"""Tracker (association by motion and appearance, absence in seconds, faces seen once),
detection scheduler (scans, windows, motion), native alignment = the engine's."""

from __future__ import annotations

import numpy as np
import pytest

from openlfr.engine.detection import Detection
from openlfr.live.scheduler import DetectionScheduler
from openlfr.live.tracker import TrackedDetection, Tracker, colour_histogram, hist_distance, iou_matrix, nms


def det(cx, cy, size=60, score=1.0, hist=None):
    h = size / 2
    return TrackedDetection(np.array([cx - h, cy - h, cx + h, cy + h], float), score, hist)


def test_iou_and_nms():
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]], float)
    iou = iou_matrix(a, a)
    assert iou[0, 0] == pytest.approx(1) and iou[0, 1] == pytest.approx(25 / 175)
    keep = nms(np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float), np.array([0.5, 0.9, 0.1]))
    assert keep == [1, 2]


def test_two_faces_tracked_with_gaps_and_ids_stable():
    tr = Tracker(max_absence_s=1.0, min_hits=2)
    ids = {}
    for i in range(0, 50):
        t = i / 25
        if i % 3:  # detections on a third of frames missing (detector stride, misses)
            tr.advance(t)
            continue
        a, b = det(100 + 4 * i, 200), det(600 - 3 * i, 220)
        pairs, new = tr.update([a, b], t, t, i)
        for track, d in pairs:
            key = "a" if d is a else "b"
            ids.setdefault(key, set()).add(track.id)
    assert ids["a"] != ids["b"] and len(ids["a"]) == 1 and len(ids["b"]) == 1
    assert tr.faces_seen == 2 and len(tr.tracks) == 2


def test_crossing_faces_keep_identity_by_motion_and_appearance():
    red = np.zeros(64, np.float32)
    red[3] = 1
    blue = np.zeros(64, np.float32)
    blue[40] = 1
    tr = Tracker(max_absence_s=1.0, min_hits=1, appearance_weight=0.5)
    seen = {"red": set(), "blue": set()}
    for i in range(30):
        t = i / 25
        r, b = det(100 + 10 * i, 300, hist=red), det(390 - 10 * i, 300, hist=blue)
        pairs, _ = tr.update([b, r], t, t, i)  # order must not matter
        for track, d in pairs:
            seen["red" if d is r else "blue"].add(track.id)
    assert len(seen["red"]) == 1 and len(seen["blue"]) == 1 and seen["red"] != seen["blue"]


def test_track_ends_after_absence_in_seconds_and_counts_once():
    tr = Tracker(max_absence_s=0.5, min_hits=2)
    for i in range(5):
        tr.update([det(100, 100)], i * 0.04, 0, i)
    assert tr.faces_seen == 1
    tr.advance(0.16 + 0.4)
    assert len(tr.tracks) == 1  # 0.4 s without it: still alive
    tr.advance(0.16 + 0.6)
    assert tr.tracks == [] and [t.id for t in tr.pop_ended()] == [1]
    assert tr.faces_seen == 1
    # the same place later: a new face, a new track
    tr.update([det(100, 100)], 2.0, 0, 50)
    tr.update([det(100, 100)], 2.04, 0, 51)
    assert tr.faces_seen == 2


def test_single_detection_is_not_a_face_seen_and_unsearched_tracks_are_not_matched():
    tr = Tracker(max_absence_s=1.0, min_hits=2)
    tr.update([det(100, 100)], 0.0, 0, 0)
    assert tr.faces_seen == 0  # one hit: maybe a false detection
    # a detection far away in a window that does not contain the track: a new track, the old one untouched
    pairs, new = tr.update([det(900, 500)], 0.04, 0, 1, searched=[(800, 400, 1000, 600)])
    assert len(new) == 1 and tr.tracks[0].hits == 1
    assert len(tr.finish()) == 2 and tr.faces_seen == 0


def test_merge_counts_one_face():
    tr = Tracker(min_hits=2)
    for i in range(3):
        tr.update([det(100, 100)], i * 0.04, 0, i)
    for i in range(3, 6):
        tr.update([det(700, 100)], i * 0.04, 0, i)
    a, b = tr.tracks
    assert tr.faces_seen == 2
    tr.merge(a, b)
    assert tr.tracks == [a] and tr.faces_seen == 1 and a.hits == 6
    assert a.box[0] > 600  # the later position


def test_colour_histogram():
    img = np.zeros((100, 100, 3), np.uint8)
    img[:, :50] = (200, 30, 30)
    img[:, 50:] = (30, 30, 200)
    a = colour_histogram(img, (0, 0, 49, 99))
    b = colour_histogram(img, (50, 0, 99, 99))
    assert a.sum() == pytest.approx(1)
    assert hist_distance(a, a) == pytest.approx(0, abs=1e-3) and hist_distance(a, b) > 0.9
    assert hist_distance(a, None) == 0.5 and colour_histogram(img, (0, 0, 1, 1)) is None


class FakeDetector:
    """Finds a 'face' wherever the grey image has the value 255 (in whatever crop/scale it is given)."""

    accepts_grey = True

    def __init__(self):
        self.calls = []

    def detect(self, img):
        self.calls.append(img.shape)
        ys, xs = np.nonzero(img == 255)
        if len(xs) == 0:
            return []
        return [Detection((int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())), 1.0)]


def frame_with_face(box, w=640, h=360):
    g = np.zeros((h, w), np.uint8)
    l, t, r, b = box
    g[t : b + 1, l : r + 1] = 255
    return np.zeros((h, w, 3), np.uint8), g


def test_scheduler_scans_maps_boxes_back_and_windows_in_between():
    fd = FakeDetector()
    s = DetectionScheduler(fd, every=5, track_every=2, scale=0.5, motion=False)
    rgb, grey = frame_with_face((100, 100, 179, 179))
    st = s.step(rgb, 0, [], grey)
    assert st.kind == "scan" and fd.calls[-1] == (180, 320)
    (d,) = st.detections
    assert np.allclose(d.box, (100, 100, 179, 179), atol=2)
    assert st.searched == [(0.0, 0.0, 640.0, 360.0)]
    assert s.step(rgb, 1, [np.array(d.box, float)], grey).kind == "none"
    st = s.step(rgb, 2, [np.array(d.box, float)], grey)
    assert st.kind == "windows" and len(st.searched) == 1
    (d2,) = st.detections
    assert np.allclose(d2.box, (100, 100, 179, 179), atol=2)
    wl, wt, wr, wb = st.searched[0]
    assert wl <= 100 and wr >= 179 and (wr - wl) < 300  # a window around the face, not the frame
    assert s.step(rgb, 5, [], grey).kind == "scan"


def test_scheduler_auto_scale_and_zone():
    s = DetectionScheduler(FakeDetector(), min_face_px=24, scan_pixels=1920 * 1080)
    assert s.scan_scale(640, 360) == pytest.approx(3.0, rel=0.01)  # small frames enlarged, within budget
    assert s.scan_scale(1920, 1080) == pytest.approx(1.0)
    assert s.smallest_face(640, 360) == pytest.approx(80 / 3, rel=0.01)
    z = DetectionScheduler(FakeDetector(), roi=(0.0, 0.5, 1.0, 1.0), scale=1.0, motion=False)
    rgb, grey = frame_with_face((10, 10, 50, 50))  # above the zone
    assert z.step(rgb, 0, [], grey).detections == []
    rgb, grey = frame_with_face((10, 250, 50, 290))
    assert len(z.step(rgb, 100, [], grey).detections) == 1


def test_scheduler_motion_scans_only_what_changed():
    fd = FakeDetector()
    s = DetectionScheduler(fd, every=1, scale=1.0, motion=True, full_every=100)
    rgb, grey = frame_with_face((300, 100, 339, 139))
    assert s.step(rgb, 0, [], grey).searched == [(0.0, 0.0, 640.0, 360.0)]  # first: full
    st = s.step(rgb, 1, [], grey)
    assert st.searched == [] and st.detections == []  # nothing moved: nothing scanned
    rgb, grey2 = frame_with_face((320, 100, 359, 139))
    st = s.step(rgb, 2, [], grey2)
    assert len(st.searched) == 1 and len(st.detections) == 1
    l, t, r, b = st.searched[0]
    assert (r - l) * (b - t) < 0.5 * 640 * 360 and l <= 320 and r >= 359


def test_native_alignment_equals_engine(astronaut):
    from openlfr.engine.pipeline import FaceEngine
    from openlfr.live.align import Aligner

    engine = FaceEngine("hog", upsample=1)
    d = engine.detect(astronaut)[0]
    ref = engine.align(astronaut, [d])[0]
    al = Aligner(engine)
    assert al.native
    f = al.align(astronaut, d)
    assert np.array_equal(f.landmarks, ref.landmarks)
    assert np.array_equal(f.chip, ref.chip)
    assert f.quality.score == pytest.approx(ref.quality.score)
    fallback = Aligner(engine, native=False).align(astronaut, d)
    assert np.array_equal(fallback.chip, ref.chip)
