"""Best shots and fusion, alert de-duplication (one per track and subject, updates, cool-down per
subject and camera), and the shared batched embedder."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from openlfr.live.alerts import AlertDecision, AlertPolicy
from openlfr.live.bestshot import BestShots, Shot, fuse, quality_bound
from openlfr.live.embedder import SharedEmbedder
from openlfr.watchlist.model import Subject

# ---------------------------------------------------------------------------- best shots


def shot(q, frame, value):
    return Shot(q, np.full(128, value, np.float32), frame)


def test_fuse_is_quality_weighted_mean_not_renormalised():
    d = np.stack([np.full(128, 1.0), np.full(128, 4.0)]).astype(np.float32)
    assert np.allclose(fuse(d, [3, 1]), 1.75)
    assert np.allclose(fuse(d, [0, 0]), 2.5)  # all weights zero: plain mean
    raw = np.random.default_rng(0).normal(0, 0.1, (3, 128)).astype(np.float32)
    f = fuse(raw, [0.2, 0.5, 0.3])
    assert np.allclose(f, (0.2 * raw[0] + 0.5 * raw[1] + 0.3 * raw[2]) / 1.0, atol=1e-6)
    assert abs(np.linalg.norm(f) - 1) > 0.05  # not forced to unit length
    with pytest.raises(ValueError):
        fuse(raw, [1, 2])


def test_best_shots_selection_and_template():
    b = BestShots(k=3, min_gain=0.05, min_gap_frames=3)
    assert b.template is None and b.wants(0.1, 0)  # the first face is embedded at once
    assert b.add(shot(0.3, 0, 1.0)) and b.version == 1
    assert not b.wants(0.9, 1)  # too soon after the last one
    assert b.wants(0.2, 3)  # fewer than k kept: another one, even if worse
    b.add(shot(0.2, 3, 2.0))
    b.add(shot(0.5, 6, 3.0))
    assert len(b.shots) == 3
    assert not b.wants(0.22, 9)  # full: must beat the worst (0.2) by min_gain
    assert b.wants(0.3, 9)
    v = b.version
    assert b.add(shot(0.6, 9, 4.0)) and b.version == v + 1
    assert sorted(s.quality for s in b.shots) == [0.3, 0.5, 0.6]  # the worst was replaced
    assert np.allclose(b.template, (0.3 * 1 + 0.5 * 3 + 0.6 * 4) / 1.4)
    assert not b.add(shot(0.1, 12, 9.0))  # worse than all kept: template unchanged
    assert b.version == v + 1 and b.embedded == 5
    assert b.best.quality == 0.6
    b.reserve(20)
    assert b.pending == 1 and not b.wants(1.0, 30)  # one embedding at a time per track
    b.clear()
    assert b.shots == [] and b.template is None


def test_absorb_keeps_the_best():
    a, b = BestShots(k=2), BestShots(k=2)
    a.add(shot(0.2, 0, 1))
    b.add(shot(0.9, 5, 2))
    b.add(shot(0.5, 9, 3))
    a.absorb(b)
    assert sorted(s.quality for s in a.shots) == [0.5, 0.9] and a.embedded == 3


def test_quality_bound_is_an_upper_bound(astronaut):
    from openlfr.engine.pipeline import FaceEngine

    engine = FaceEngine("hog", upsample=1)
    for f in engine.analyze(astronaut, descriptors=False):
        w = f.box[2] - f.box[0] + 1
        assert quality_bound(w, f.score) >= f.quality.score
    assert quality_bound(20, 0.0) < quality_bound(60, 0.0) < quality_bound(120, 1.0) <= 1.0


# ---------------------------------------------------------------------------- alerts

SUBJECTS = [Subject("s0", "Subject Zero"), Subject("s1", "Subject One")]


def test_one_alert_per_track_and_subject_with_updates():
    p = AlertPolicy(0.5, cooldown_s=30, min_improvement=0.01, subjects=SUBJECTS)
    ev = p.consider("cam", 1, [(0, 0.45)], frame=10, t=0.4, first_wall=0.0)
    assert [e.kind for e in ev] == ["alert"] and ev[0].alert.subject == "s0" and ev[0].alert.name == "Subject Zero"
    assert p.consider("cam", 1, [(0, 0.46)], 11, 0.44, 0.0) == []  # worse: nothing
    assert p.consider("cam", 1, [(0, 0.445)], 12, 0.48, 0.0) == []  # better by less than min_improvement
    ev = p.consider("cam", 1, [(0, 0.40)], 13, 0.52, 0.0)
    assert [e.kind for e in ev] == ["update"] and ev[0].alert.id == 1 and ev[0].alert.distance == 0.40
    assert len(p.alerts) == 1 and p.updates == 1
    # the same track close to another subject too: a second alert (one per track *and* subject)
    ev = p.consider("cam", 1, [(1, 0.49)], 14, 0.56, 0.0)
    assert [e.kind for e in ev] == ["alert"] and len(p.alerts) == 2


def test_threshold_is_strict_and_unknown_labels_ignored():
    p = AlertPolicy(0.5)
    assert p.consider("cam", 1, [(0, 0.5)], 0, 0, 0) == []
    assert p.consider("cam", 1, [(-1, 0.1)], 0, 0, 0) == []
    assert len(p.consider("cam", 1, [(0, 0.4999)], 0, 0, 0)) == 1


def test_cooldown_per_subject_and_camera():
    p = AlertPolicy(0.5, cooldown_s=10, subjects=SUBJECTS)
    assert len(p.consider("cam1", 1, [(0, 0.4)], 0, 1.0, 0)) == 1
    p.track_ended("cam1", 1)
    # the same person on a new track (broken track, or back again) within the cool-down: linked, no new alert
    ev = p.consider("cam1", 2, [(0, 0.45)], 50, 5.0, 0)
    assert ev == [] and p.suppressed == 1 and p.alerts[0].tracks == [1, 2]
    ev = p.consider("cam1", 2, [(0, 0.3)], 51, 5.5, 0)  # a better shot updates the existing alert
    assert [e.kind for e in ev] == ["update"] and ev[0].alert.id == 1 and ev[0].track == 2
    # another camera: its own alert
    assert [e.kind for e in p.consider("cam2", 3, [(0, 0.45)], 0, 5.0, 0)] == ["alert"]
    # another subject on cam1: not affected by s0's cool-down
    assert [e.kind for e in p.consider("cam1", 4, [(1, 0.45)], 60, 6.0, 0)] == ["alert"]
    # the cool-down runs from the latest sighting (5.5 s): at 14 s still within, at 16 s over
    assert p.consider("cam1", 5, [(0, 0.45)], 300, 14.0, 0) == []
    p.track_ended("cam1", 5)
    assert [e.kind for e in p.consider("cam1", 6, [(0, 0.45)], 500, 24.5, 0)] == ["alert"]
    assert p.per_subject() == {"s0": 3, "s1": 1}


def test_alert_keeps_probe_and_json_has_no_template():
    p = AlertPolicy(0.5, subjects=SUBJECTS)
    chip = np.zeros((150, 150, 3), np.uint8)
    (ev,) = p.consider("cam", 7, [(0, 0.3)], 3, 0.1, first_wall=0.0, chip=chip, template=np.ones(128), now=0.25)
    a = ev.alert
    assert a.chip is not chip and a.chip.shape == (150, 150, 3) and a.template.shape == (128,)
    j = a.to_json()
    assert set(j) >= {"event", "camera", "track", "subject", "distance", "frame", "time"}
    assert j["latency_ms"] == 250.0
    assert not any(isinstance(v, (list, np.ndarray)) for v in j.values())


def test_alert_keeps_how_it_was_decided_and_updates_it():
    """A match's threshold and its decision (4th element: score, band Z threshold, band, second
    model) are kept on the alert and in its JSON; a better shot brings its own; a match without
    them (a fixed threshold) has the policy's threshold and no score."""
    p = AlertPolicy(0.5, subjects=SUBJECTS, min_improvement=0.01)
    fused = AlertDecision(-3.1, -2.4, "B", "sface")
    (ev,) = p.consider("cam", 1, [(0, 0.52, 0.93, fused)], 3, 0.1, 0.0)
    a = ev.alert
    assert (a.distance, a.threshold, a.score, a.score_threshold, a.band, a.second_model) == (0.52, 0.93, -3.1, -2.4, "B", "sface")
    j = a.to_json()
    assert (j["threshold"], j["score"], j["score_threshold"], j["band"], j["second_model"]) == (0.93, -3.1, -2.4, "B", "sface")
    # a better shot decided on dlib's Z alone (its probe had no second feature), in a stricter band
    (ev,) = p.consider("cam", 1, [(0, 0.48, 0.55, AlertDecision(-2.9, -2.7, "C", None))], 4, 0.2, 0.0)
    assert ev.kind == "update" and ev.alert is a
    assert (a.distance, a.threshold, a.score, a.score_threshold, a.band, a.second_model) == (0.48, 0.55, -2.9, -2.7, "C", None)
    # not better: nothing changes
    assert p.consider("cam", 1, [(0, 0.475, 0.9, fused)], 5, 0.3, 0.0) == []
    assert a.threshold == 0.55 and a.second_model is None
    # a fixed threshold: the policy's, no score
    (ev,) = p.consider("cam", 2, [(1, 0.3)], 6, 0.4, 0.0)
    b = ev.alert
    assert b.threshold == 0.5 and b.score is b.score_threshold is b.band is b.second_model is None
    assert b.to_json()["score"] is None and b.to_json()["threshold"] == 0.5
    # a threshold without a decision
    (ev,) = p.consider("cam2", 3, [(1, 0.6, 0.7)], 7, 0.5, 0.0)
    assert ev.alert.threshold == 0.7 and ev.alert.score is None


def test_merged_tracks_share_alerts():
    p = AlertPolicy(0.5)
    p.consider("cam", 1, [(0, 0.4)], 0, 0, 0)
    p.merge_tracks("cam", keep=2, other=1)
    assert p.consider("cam", 2, [(0, 0.45)], 1, 0.1, 0) == []
    assert len(p.alerts) == 1 and 2 in p.alerts[0].tracks


# ---------------------------------------------------------------------------- shared embedder


def test_shared_embedder_batches_across_cameras():
    calls = []

    def compute(chips):
        calls.append(len(chips))
        return chips.reshape(len(chips), -1)[:, :128].astype(np.float32)

    emb = SharedEmbedder(compute, batch=64, wait_ms=50).start()
    results = {}

    def camera(i):
        chips = np.full((2, 150, 150, 3), i, np.uint8)
        results[i] = emb.embed(chips)

    threads = [threading.Thread(target=camera, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    emb.stop()
    assert all(np.all(results[i] == i) and results[i].shape == (2, 128) for i in range(4))
    assert emb.faces == 8 and sum(calls) == 8
    assert emb.batches < 4  # cameras' requests were batched together
    assert emb.embed(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)


def test_shared_embedder_runs_the_second_model_on_the_crops_it_is_given():
    """``submit_pair``: the second model's features of the faces that have a crop, NaN rows for those
    that have none; without a second model (or any crop) the second part is None."""
    seen = []

    def compute(chips):
        return np.full((len(chips), 128), 1.0, np.float32)

    def second(crops):
        seen.append(len(crops))
        return crops.reshape(len(crops), -1)[:, :128].astype(np.float32)

    emb = SharedEmbedder(compute, second=second).start()
    chips = np.zeros((3, 150, 150, 3), np.uint8)
    crops = [np.full((112, 112, 3), 5, np.uint8), None, np.full((112, 112, 3), 9, np.uint8)]
    desc, feats = emb.submit_pair(chips, crops).result(10)
    assert desc.shape == (3, 128) and feats.shape == (3, 128)
    assert np.all(feats[0] == 5) and np.all(np.isnan(feats[1])) and np.all(feats[2] == 9)
    assert seen == [2] and emb.second_faces == 2
    assert emb.submit_pair(chips, [None] * 3).result(10)[1] is None
    assert emb.embed(chips).shape == (3, 128)  # plain submit: the descriptors alone
    emb.stop()
    plain = SharedEmbedder(compute).start()
    assert plain.submit_pair(chips, crops).result(10)[1] is None
    plain.stop()


def test_shared_embedder_errors_reach_the_caller():
    def compute(chips):
        raise RuntimeError("model broke")

    emb = SharedEmbedder(compute).start()
    with pytest.raises(RuntimeError, match="model broke"):
        emb.embed(np.zeros((1, 150, 150, 3), np.uint8))
    emb.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        emb.embed(np.zeros((1, 150, 150, 3), np.uint8))
