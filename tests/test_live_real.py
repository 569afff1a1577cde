"""Live recognition on the real videos of ../shared/data/video (skipped when absent).

- hamilton_clip_640x360.mp4 against hamilton_refs/ (4 subjects): alerts for Lin-Manuel
  Miranda and Alex Lacamoire (at 0.6 and at the default calibrated threshold), none for Joe
  Biden or Barack Obama, alerts per person bounded by their tracks;
- crowd_walk_1920x1080.mp4 against every identity of lfw-dev (2,829 subjects, first image
  each): no alert at the default threshold; at least 90% of the 124 faces marked by eye on 19
  frames (tests/data/crowd_walk_boxes.xml) found by live tracks; faces seen within 1 of the
  people whose face is visible, counted by eye; the privacy invariant (test_live_privacy.py uses
  the same watchlist).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from openlfr.live.config import RunConfig
from openlfr.live.runner import LiveRunner

pytestmark = [pytest.mark.shared]

# Counted once by eye on frames 0, 20, 40, 60, 80 and 104 (extracted to PNG): the people whose
# face (frontal or profile) is visible at some point: the woman with the scarf, the red-haired
# young man, the boy in the blue hoodie, the white-haired woman in the red-trimmed coat, the bald
# man in the beige coat, the curly-haired woman in the red jacket, the older man with white hair,
# the man with the camera (right, first frames), the woman with the yellow scarf, the man with
# glasses in the black jacket, the bald man on the far right. (Two more walk away from the camera,
# faces never visible; three or four faces near the far door are a few pixels across.)
CROWD_PEOPLE_BY_EYE = 11


def lfw_first_images(root: Path) -> list[tuple[str, Path]]:
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        imgs = sorted(d.glob("*.jpg"))
        if imgs:
            out.append((d.name, imgs[0]))
    return out


def lfw_watchlist(shared_data: Path):
    """The 2,829-subject LFW watchlist (first image each), cached under the openlfr cache folder.

    Enrolled like ``watchlist.enrol`` does (largest face, flip-averaged template), with the
    default detector (RetinaFace, boxes mapped to dlib's convention; LFW's images are all
    250x250, so they go through it in batches) and dlib's native landmarks and chips: about a
    minute once instead of several. With SFace installed, the second model's templates too (its
    crop from RetinaFace's landmarks, flip-averaged, as enrolment makes them): a few minutes more.
    """
    from openlfr.engine.cache import cache_dir
    from openlfr.engine.descriptor import DescriptorModel
    from openlfr.engine.images import load_image
    from openlfr.engine.retina import RetinaDetector
    from openlfr.engine.sface import load_second_model
    from openlfr.live.align import Aligner
    from openlfr.watchlist.model import Subject, Watchlist

    second = load_second_model("auto")
    items = lfw_first_images(shared_data / "lfw-dev" / "images")
    key = hashlib.sha256("\n".join(["retina", "sface" if second else "", *(f"{n}:{p.name}:{p.stat().st_size}" for n, p in items)]).encode()).hexdigest()[:16]
    path = cache_dir() / f"test-live-lfw-watchlist-{key}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        ids = [str(x) for x in z["ids"]]
        subjects = [Subject(i, i.replace("_", " ")) for i in ids]
        return Watchlist(subjects, z["templates"], np.arange(len(ids)), z["quality"],
                         second_templates=z["second"] if "second" in z.files else None)
    det = RetinaDetector()
    aligner = Aligner(None)
    aligner.second = second
    model = DescriptorModel()
    ids, chips, quality, crops = [], [], [], []
    for start in range(0, len(items), 32):
        part = items[start:start + 32]
        imgs = [load_image(p) for _, p in part]
        for (name, _), rgb, dets in zip(part, imgs, det.detect_batch(imgs)):
            if not dets:
                continue
            d = max(dets, key=lambda d: d.width * d.height)
            face = aligner.align(rgb, d)
            ids.append(name)
            chips.append(face.chip)
            crops.append(face.second_crop)
            quality.append(face.quality.score)
    templates = model.compute(np.stack(chips), flip=True).astype(np.float32)
    extra = {}
    if second is not None:
        from openlfr.watchlist.enrol import second_features

        extra["second"] = second_features(second, crops, flip=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, ids=np.array(ids), templates=templates, quality=np.array(quality, np.float32), **extra)
    os.replace(tmp, path)
    subjects = [Subject(i, i.replace("_", " ")) for i in ids]
    return Watchlist(subjects, templates, np.arange(len(ids)), np.array(quality, np.float32),
                     second_templates=extra.get("second"))


CROWD_BOXES = Path(__file__).resolve().parent / "data" / "crowd_walk_boxes.xml"


def crowd_marked_faces() -> dict[int, list[tuple[int, int, int, int]]]:
    """The faces marked by eye on the crowd clip (tests/data/crowd_walk_boxes.xml; ignored ones left
    out): frame index -> boxes."""
    from openlfr.evaluate.detection import read_boxes

    return {int(name.split(":")[1]): [m.box for m in ms if not m.ignore] for name, ms in read_boxes(CROWD_BOXES).items()}


def found_by_tracks(face, tracks, margin: float = 0.25) -> bool:
    """A marked face counts as found when a live track's box (grown by ``margin``) holds its centre."""
    x, y = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    for l, t, r, b in tracks:
        w, h = r - l, b - t
        if l - margin * w <= x <= r + margin * w and t - margin * h <= y <= b + margin * h:
            return True
    return False


@pytest.fixture(scope="session")
def lfw_wl(shared_data):
    return lfw_watchlist(shared_data)


def run_live(cfg: RunConfig, watchlist=None, hook=None):
    events = []
    r = LiveRunner(cfg, on_event=events.append, watchlist=watchlist)
    r.prepare()
    r.frame_hook = hook
    summary = r.run()
    return r, summary, events


@pytest.mark.slow
def test_hamilton_alerts_lin_manuel_and_lacamoire_not_biden(shared_data):
    video = shared_data / "video"
    tracks: dict[str, set[int]] = {}

    def hook(worker, frame):
        for tr in worker.tracker.tracks:
            for a in tr.alerts.values():
                tracks.setdefault(a.subject, set()).add(tr.id)

    # dlib's published threshold 0.6 (the default threshold: the test below).
    cfg = RunConfig(sources=[str(video / "hamilton_clip_640x360.mp4")], watchlist=video / "hamilton_refs",
                    alerts={"threshold": 0.6})
    r, summary, events = run_live(cfg, hook=hook)
    alerts = [e for e in events if e["event"] == "alert"]
    subjects = {a["subject"] for a in alerts}
    assert "lin-manuel-miranda" in subjects
    assert "alex-lacamoire" in subjects
    assert "biden" not in subjects
    lac = [a for a in alerts if a["subject"] == "alex-lacamoire"]
    assert min(a["frame"] for a in lac) < 30  # he is at the piano in the first frames only
    # alerts per person bounded by that person's tracks, not by frames
    per = summary["alerts_per_subject"]
    for subj, n in per.items():
        assert n <= len(tracks.get(subj, ())) or n == 1
    assert per["lin-manuel-miranda"] <= 3
    assert summary["frames"] == 275 and summary["dropped_frames"] == 0
    assert sum(per.values()) == summary["alerts"] < 10
    assert summary["threshold"] == 0.6 and "given" in summary["threshold_reason"]


@pytest.mark.slow
def test_hamilton_default_threshold_says_why_and_alerts_the_small_face(shared_data):
    """At the default calibrated threshold (0.500 for 4 subjects at FPIR 0.1%): Miranda and
    Lacamoire, whose face at the piano is ~25 px wide (re-detected enlarged and aligned from
    RetinaFace's landmarks, docs/live.md), alert; Biden and Obama never do."""
    video = shared_data / "video"
    cfg = RunConfig(sources=[str(video / "hamilton_clip_640x360.mp4")], watchlist=video / "hamilton_refs")
    r, summary, events = run_live(cfg)
    start = events[0]
    assert start["event"] == "start" and start["watchlist_subjects"] == 4
    # the default fuses the second model where it is installed (its feature of all 4 references)
    from openlfr.engine.sface import load_second_model

    fused = load_second_model("auto") is not None
    assert start["second_model"] == ("sface" if fused else None)
    assert start["second_templates"] == (4 if fused else 0)
    assert summary["embedded_second"] == (summary["embedded"] if fused else 0)
    assert 0.4 < start["threshold"] < 0.6
    assert "4-subject watchlist" in start["threshold_reason"] and "0.1%" in start["threshold_reason"]
    per = summary["alerts_per_subject"]
    assert "biden" not in per and "obama" not in per
    assert per.get("lin-manuel-miranda", 0) >= 1 and per.get("alex-lacamoire", 0) >= 1, per
    assert per["lin-manuel-miranda"] <= 3


# The deployment's zone of recognition for this camera: the band where walkers' faces are
# (the ceiling and the floor in front of the camera hold none). Scanning only there lets the
# detector look at it enlarged 1.5x (faces from ~55 px) for the cost of the whole frame at 1x.
CROWD_ZONE = (0.0, 0.45, 1.0, 0.9)


@pytest.mark.slow
def test_crowd_against_lfw_no_alert_faces_found_and_seen(shared_data, lfw_wl):
    """Default settings (RetinaFace): no alert against 2,829 subjects; the faces marked by eye on 19
    frames found by live tracks (issue 13's target: 90%); faces seen within 1 of the people."""
    assert len(lfw_wl) > 2700
    cfg = RunConfig(sources=[str(shared_data / "video" / "crowd_walk_1920x1080.mp4")], watchlist=Path("lfw-dev"))
    marked = crowd_marked_faces()
    assert sum(map(len, marked.values())) >= 120
    boxes: dict[int, list] = {}

    def hook(worker, frame):
        if frame.index in marked:
            boxes[frame.index] = [tuple(tr.predict(frame.time)) for tr in worker.tracker.tracks
                                  if frame.time - tr.last_time < 0.3]

    r, summary, events = run_live(cfg, watchlist=lfw_wl, hook=hook)
    assert summary["alerts"] == 0, [e for e in events if e["event"] == "alert"]  # at the default threshold
    from openlfr.engine.sface import load_second_model

    if load_second_model("auto") is not None:  # decided on the fused score, every reference with SFace's feature
        assert events[0]["second_model"] == "sface" and events[0]["second_templates"] == len(lfw_wl)
        assert summary["embedded_second"] > 0
    assert f"{len(lfw_wl)}-subject" in summary["threshold_reason"] and "every band" in summary["threshold_reason"]
    assert summary["frames"] == 105 and summary["dropped_frames"] == 0
    found = sum(found_by_tracks(f, boxes.get(i, [])) for i, faces in marked.items() for f in faces)
    total = sum(map(len, marked.values()))
    assert found / total >= 0.9, f"{found}/{total}"
    assert abs(summary["faces_seen"] - CROWD_PEOPLE_BY_EYE) <= 1, summary["faces_seen"]
