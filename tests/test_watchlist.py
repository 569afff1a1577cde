"""Watchlist: exact index, per-subject search, thresholds from the impostor table, enrolment."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from openlfr.watchlist import (
    ExactIndex,
    SearchIndex,
    Subject,
    Watchlist,
    WatchlistError,
    best_per_subject,
    choose_threshold,
    fpir,
    load_impostor_table,
    make_index,
    top_subjects,
)


def brute(q, t):
    return np.linalg.norm(q[:, None, :].astype(np.float64) - t[None].astype(np.float64), axis=-1)


# ---------------------------------------------------------------- index


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_exact_index_matches_brute_force(k):
    rng = np.random.default_rng(k)
    t = (rng.normal(size=(300, 128)) * 0.05).astype(np.float32)
    q = (rng.normal(size=(41, 128)) * 0.05).astype(np.float32)
    ix = ExactIndex(batch_elems=3000)  # several probe batches
    ix.add(t[:120], np.arange(120))
    ix.add(t[120:], np.arange(120, 300))
    assert len(ix) == 300 and isinstance(ix, SearchIndex)
    d, lab = ix.search(q, k)
    ref = brute(q, t)
    order = np.argsort(ref, axis=1, kind="stable")[:, :k]
    assert d.shape == lab.shape == (41, k)
    np.testing.assert_allclose(d, np.take_along_axis(ref, order, 1), atol=1e-6)
    np.testing.assert_array_equal(lab, order)
    assert (np.diff(d, axis=1) >= 0).all()


def test_exact_index_ties_broken_by_insertion_order():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(5, 128)).astype(np.float32)
    t = np.concatenate([base, base, base])  # every vector three times
    ix = make_index("exact")
    ix.add(t, np.arange(15))
    for k in range(1, 6):
        d, lab = ix.search(base, k)
        want = np.array([[i, i + 5, i + 10][: min(k, 3)] for i in range(5)])
        np.testing.assert_array_equal(lab[:, : min(k, 3)], want)
        np.testing.assert_allclose(d[:, : min(k, 3)], 0, atol=1e-6)
    # equal distances from a probe to different templates: the earlier template wins
    probe = np.zeros((1, 128), np.float32)
    sym = np.zeros((4, 128), np.float32)
    sym[[0, 1, 2, 3], [0, 1, 2, 3]] = [1, -1, 1, 2]
    ix2 = ExactIndex()
    ix2.add(sym, [7, 8, 9, 10])
    d, lab = ix2.search(probe, 3)
    np.testing.assert_array_equal(lab[0], [7, 8, 9])
    np.testing.assert_allclose(d[0], [1, 1, 1])


def test_exact_index_edge_cases():
    ix = ExactIndex()
    d, lab = ix.search(np.zeros((2, 128), np.float32), 3)
    assert np.isinf(d).all() and (lab == -1).all()
    ix.add(np.ones((2, 128), np.float32), [4, 5])
    d, lab = ix.search(np.zeros(128, np.float32), 3)  # one probe as a vector; k > size
    assert lab[0].tolist() == [4, 5, -1] and np.isinf(d[0, 2])
    with pytest.raises(ValueError):
        ix.search(np.zeros((1, 64), np.float32))
    with pytest.raises(ValueError):
        ix.add(np.ones((2, 128), np.float32), [1])
    with pytest.raises(ValueError, match="unknown index kind"):
        make_index("annoy")


def test_best_per_subject_with_several_templates():
    rng = np.random.default_rng(3)
    n_subj, per = 20, 4
    centres = rng.normal(size=(n_subj, 128)).astype(np.float32) * 0.1
    t = (np.repeat(centres, per, 0) + rng.normal(size=(n_subj * per, 128)).astype(np.float32) * 0.03)
    labels = np.repeat(np.arange(n_subj), per)
    perm = rng.permutation(len(t))  # templates of one subject are not contiguous
    ix = make_index()
    ix.add(t[perm], labels[perm])
    q = centres[[3, 7, 11]] + rng.normal(size=(3, 128)).astype(np.float32) * 0.03
    d, s = best_per_subject(ix, q)
    ref = brute(q, t)
    per_subject = np.stack([ref[:, labels == i].min(1) for i in range(n_subj)], 1)
    np.testing.assert_array_equal(s, per_subject.argmin(1))
    np.testing.assert_array_equal(s, [3, 7, 11])
    np.testing.assert_allclose(d, per_subject.min(1), atol=1e-6)
    dk, sk = top_subjects(ix, q, k=5)
    order = np.argsort(per_subject, 1)[:, :5]
    np.testing.assert_array_equal(sk, order)
    np.testing.assert_allclose(dk, np.take_along_axis(per_subject, order, 1), atol=1e-5)
    assert all(len(set(row)) == 5 for row in sk.tolist())


def test_top_subjects_generic_index_agrees():
    class Wrapped:  # any SearchIndex, not the numpy one: exercises the widening path
        def __init__(self):
            self.ix = ExactIndex()

        def add(self, t, lab):
            self.ix.add(t, lab)

        def search(self, q, k=1):
            return self.ix.search(q, k)

        def __len__(self):
            return len(self.ix)

    rng = np.random.default_rng(5)
    t = rng.normal(size=(200, 128)).astype(np.float32)
    lab = rng.integers(0, 6, 200)
    q = rng.normal(size=(7, 128)).astype(np.float32)
    a, b = Wrapped(), ExactIndex()
    a.add(t, lab)
    b.add(t, lab)
    for k in (1, 3, 6, 8):
        da, la = top_subjects(a, q, k)
        db, lb = top_subjects(b, q, k)
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_allclose(da, db, atol=1e-5)


def test_watchlist_model():
    subjects = [Subject("a", "A"), Subject("b", "B", "missing person")]
    wl = Watchlist(subjects, np.zeros((3, 128)), [0, 1, 1], [0.9, 0.8, 0.7])
    assert len(wl) == 2 and wl.n_templates == 3 and wl.subject(1).category == "missing person"
    assert wl.templates.dtype == np.float32 and wl.templates_of(1).shape == (2, 128)
    d, s = best_per_subject(wl.make_index(), np.zeros((1, 128), np.float32))
    assert s[0] == 0 and d[0] == 0
    with pytest.raises(WatchlistError):
        Watchlist(subjects, np.zeros((2, 128)), [0, 2], [1, 1])


# ---------------------------------------------------------------- thresholds


def test_packaged_table_loads_and_agrees_with_held_out_lfw():
    tab = load_impostor_table()
    assert tab.n_comparisons > 1_000_000
    assert tab.thresholds[0] == pytest.approx(0.2) and tab.thresholds[-1] == pytest.approx(0.8)
    assert (np.diff(tab.fmr) >= 0).all() and (np.diff(tab.fmr_measured) >= 0).all()
    assert {"dataset", "date", "command"} <= set(tab.provenance)
    # held-out LFW, 874 subjects: 0.6 -> 84%, 0.5 -> 8.6%, 0.4 -> 0.2% of strangers alert
    assert 0.6 < fpir(0.6, 874) <= 1.0
    assert 0.02 < fpir(0.5, 874) < 0.3
    assert 1e-4 < fpir(0.4, 874) < 0.02


def test_threshold_monotonic_in_size_and_target():
    ts = [choose_threshold(n).threshold for n in (1, 4, 50, 874, 2829, 20000)]
    assert all(a >= b for a, b in zip(ts, ts[1:])) and ts[0] > ts[-1]
    tt = [choose_threshold(874, f).threshold for f in (1e-4, 1e-3, 1e-2, 0.1)]
    assert all(a <= b for a, b in zip(tt, tt[1:])) and tt[0] < tt[-1]
    c = choose_threshold(4, 0.001)
    assert c.expected_fpir <= 0.001 and c.n_subjects == 4 and c.target_fpir == 0.001
    assert f"{c.threshold:.3f}" in c.reason and "4-subject watchlist" in c.reason and "0.1%" in c.reason
    tab = load_impostor_table()
    nxt = c.threshold + 0.005
    if nxt <= tab.thresholds[-1]:
        assert fpir(nxt, 4) > 0.001  # the largest such threshold on the grid
    with pytest.raises(ValueError):
        choose_threshold(0)


# ---------------------------------------------------------------- enrolment


@pytest.fixture(scope="module")
def engine():
    from openlfr.engine.pipeline import FaceEngine

    return FaceEngine(detector="hog", upsample=1)


@pytest.fixture(scope="module")
def refs(shared_data) -> Path:
    p = shared_data / "video" / "hamilton_refs"
    if not p.is_dir():
        pytest.skip("hamilton_refs absent")
    return p


def test_enrol_hamilton_refs(refs, engine):
    from openlfr.watchlist import load_watchlist

    wl, rep = load_watchlist(refs, engine)
    assert sorted(s.id for s in wl.subjects) == ["alex-lacamoire", "biden", "lin-manuel-miranda", "obama"]
    assert len(wl) == 4 and wl.templates.shape == (4, 128) and not rep.rejected and not rep.excluded_subjects
    assert wl.subject(wl.subject_index("lin-manuel-miranda")).name == "lin-manuel-miranda"
    # templates of different people are far apart
    d = brute(wl.templates, wl.templates)
    assert d[~np.eye(4, dtype=bool)].min() > 0.5


def test_enrol_rejections_with_reasons(refs, shared_data, engine, tmp_path):
    import cv2
    from PIL import Image

    from openlfr.engine.images import load_image
    from openlfr.watchlist import load_watchlist

    good = tmp_path / "wl" / "Barack_Obama"
    bad = tmp_path / "wl" / "Nobody_Here"
    good.mkdir(parents=True)
    bad.mkdir(parents=True)
    shutil.copy(refs / "obama.jpg", good / "portrait.jpg")
    (good / "notes.txt").write_text("not an image")
    (good / ".DS_Store").write_bytes(b"ignored")
    data = (refs / "obama.jpg").read_bytes()
    (good / "corrupt.jpg").write_bytes(data[: len(data) // 3])
    shutil.copy(shared_data / "detection" / "dogs.jpg", bad / "dogs.jpg")
    rgb = load_image(refs / "obama.jpg")
    h, w = rgb.shape[:2]

    def scaled(f):
        return cv2.resize(rgb, (int(w * f), int(h * f)), interpolation=cv2.INTER_AREA)

    Image.fromarray(scaled(1 / 6)).save(good / "tiny.png")  # face ~45 px wide
    Image.fromarray(cv2.GaussianBlur(scaled(0.5), (0, 0), 4)).save(good / "blurred.png")
    half = scaled(0.5)
    Image.fromarray(np.concatenate([half, half], axis=1)).save(good / "two.png")
    group = np.zeros_like(np.concatenate([half, half], axis=1))
    group[:, : half.shape[1]] = half
    quarter = scaled(0.2)
    group[: quarter.shape[0], half.shape[1] : half.shape[1] + quarter.shape[1]] = quarter
    Image.fromarray(group).save(good / "group.png")

    wl, rep = load_watchlist(tmp_path / "wl", engine, min_face=80)
    assert [s.id for s in wl.subjects] == ["Barack_Obama"] and wl.subject(0).name == "Barack Obama"
    assert wl.subject(0).images == [str(good / "group.png"), str(good / "portrait.jpg")]
    assert wl.templates.shape == (2, 128) and (wl.template_subject == 0).all()
    assert [a.note for a in rep.accepted] == ["dominant face of 2", ""]
    assert rep.excluded_subjects == ["Nobody_Here"]
    assert "not an image" in rep.reason_for(good / "notes.txt")
    assert "corrupt" in rep.reason_for(good / "corrupt.jpg")
    assert rep.reason_for(bad / "dogs.jpg") == "no face found"
    assert "too small" in rep.reason_for(good / "tiny.png")
    assert "too blurred" in rep.reason_for(good / "blurred.png")
    assert rep.reason_for(good / "two.png").startswith("2 faces found")
    assert len(rep.rejected) == 6 and "Nobody_Here" in rep.summary()
    # the two templates of one person are close
    assert np.linalg.norm(wl.templates[0] - wl.templates[1]) < 0.3


def test_enrol_csv(refs, engine, tmp_path):
    from openlfr.watchlist import load_watchlist

    ok = tmp_path / "ok.csv"
    ok.write_text(
        "subject_id,name,image,category\n"
        f"s1,Barack Obama,{refs / 'obama.jpg'},wanted by courts\n"
        "s2,Nobody,missing.jpg,missing person\n"
    )
    wl, rep = load_watchlist(ok, engine)
    assert [(s.id, s.name, s.category) for s in wl.subjects] == [("s1", "Barack Obama", "wanted by courts")]
    assert rep.excluded_subjects == ["s2"] and "no such file" in rep.rejected[0][1]

    bad = tmp_path / "bad.csv"
    bad.write_text("subject_id,name,category\ns1,A,x\n")
    with pytest.raises(WatchlistError, match="line 1.*image"):
        load_watchlist(bad, engine)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("subject_id,name,image,category\ns1,A,a.jpg,x\ns2,B,b.jpg\n")
    with pytest.raises(WatchlistError, match="line 3"):
        load_watchlist(ragged, engine)


def test_enrol_errors(engine, tmp_path):
    from openlfr.watchlist import load_watchlist

    with pytest.raises(WatchlistError, match="no such file"):
        load_watchlist(tmp_path / "absent", engine)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WatchlistError, match="no subjects"):
        load_watchlist(tmp_path / "empty", engine)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    with pytest.raises(WatchlistError, match="no subject has an accepted image"):
        load_watchlist(tmp_path / "junk", engine)
