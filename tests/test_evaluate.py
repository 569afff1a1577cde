"""Evaluation: metrics on hand-computed cases, the fallback policy, and small real runs on lfw-dev."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from openlfr.evaluate import metrics
from openlfr.evaluate.embedding import central_box, nearest_centre
from openlfr.evaluate.identify import build_protocol, score_matrix, templates, znorm_stats

# --------------------------------------------------------------------------- pairs files

PAIRS = "2\t1\nAnn\t1\t2\nAnn\t1\tBob\t3\nCid\t2\t4\nCid\t1\tDee\t1\n"


def test_parse_pairs_folds_and_kinds():
    folds, n, pairs = metrics.parse_pairs(PAIRS)
    assert (folds, n, len(pairs)) == (2, 1, 4)
    assert pairs[0] == metrics.Pair("Ann", 1, "Ann", 2, True, 0)
    assert pairs[1] == metrics.Pair("Ann", 1, "Bob", 3, False, 0)
    assert pairs[2] == metrics.Pair("Cid", 2, "Cid", 4, True, 1)
    assert pairs[3] == metrics.Pair("Cid", 1, "Dee", 1, False, 1)
    assert metrics.lfw_image_path("/d", "Ann", 2) == Path("/d/Ann/Ann_0002.jpg")


def test_parse_pairs_accepts_spaces_and_blank_lines():
    folds, n, pairs = metrics.parse_pairs("1 1\n\nAnn 1 2\nAnn 1 Bob 3\n\n")
    assert (folds, n, [p.same for p in pairs]) == (1, 1, [True, False])


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty pairs file"),
        ("ten\t300\n", "header must be"),
        ("0\t1\n", "must be positive"),
        ("2\t1\nAnn\t1\t2\nAnn\t1\tBob\t3\n", "promises 2 folds x (2 x 1) = 4 pair lines, found 2"),
        ("1\t1\nAnn\t1\tBob\t2\nAnn\t1\tBob\t3\n", "t.txt:2: fold 1 line 1 should be a matched pair"),
        ("1\t1\nAnn\t1\t2\nAnn\t1\t3\n", "t.txt:3: fold 1 line 2 should be a mismatched pair"),
        ("1\t1\nAnn\tone\t2\nAnn\t1\tBob\t3\n", "t.txt:2:"),
        ("1\t1\nAnn\t0\t2\nAnn\t1\tBob\t3\n", "image numbers start at 1"),
    ],
)
def test_parse_pairs_rejects_malformed(text, message):
    with pytest.raises(metrics.PairsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        metrics.parse_pairs(text, "t.txt")


def test_read_pairs_missing_file(tmp_path):
    with pytest.raises(metrics.PairsError, match="cannot read pairs file"):
        metrics.read_pairs(tmp_path / "nope.txt")


# --------------------------------------------------------------------------- verification


def test_best_threshold_separable():
    t, acc = metrics.best_threshold([0.2, 0.4, 0.5, 0.7], [True, True, False, False])
    assert t == pytest.approx(0.45) and acc == 1.0


def test_best_threshold_tie_takes_lower_middle():
    # accepting 1 or 3 lowest both give 3/4; of the two candidates (0.2, 0.7) the lower middle is 0.2
    t, acc = metrics.best_threshold([0.1, 0.3, 0.5, 0.9], [True, False, True, False])
    assert t == pytest.approx(0.2) and acc == 0.75


def test_best_threshold_ties_in_scores_are_one_candidate():
    # 0.4 appears twice (one same, one different): a threshold cannot split them
    t, acc = metrics.best_threshold([0.3, 0.4, 0.4, 0.8], [True, True, False, False])
    assert acc == 0.75 and t == pytest.approx(0.35)


def test_accuracy_at_is_strict():
    assert metrics.accuracy_at([0.6, 0.59], [True, True], 0.6) == 0.5


def test_kfold_accuracy_hand_computed():
    # fold 0: train on folds 1+2 = {.4 T, .45 F, .55 T, .6 F}: best 3/4 at t=.425 or .575 -> .425; test: 2/2
    # fold 1: train on folds 0+2 = {.3 T, .45 F, .5 F, .55 T}: best 3/4 at t=.375 only; test .4 T missed: 1/2
    # fold 2: train on folds 0+1 = {.3 T, .4 T, .5 F, .6 F}: 4/4 at t=.45; test .55 T missed: 1/2
    scores = [0.3, 0.5, 0.4, 0.6, 0.55, 0.45]
    same = [True, False, True, False, True, False]
    folds = [0, 0, 1, 1, 2, 2]
    kf = metrics.kfold_accuracy(scores, same, folds)
    np.testing.assert_allclose(kf.accuracies, [1.0, 0.5, 0.5])
    np.testing.assert_allclose(kf.thresholds, [0.425, 0.375, 0.45])
    assert kf.mean == pytest.approx(2 / 3)
    assert kf.std == pytest.approx(math.sqrt(1 / 12))  # sample std (ddof=1)
    assert kf.standard_error == pytest.approx(math.sqrt(1 / 12) / math.sqrt(3))


def test_kfold_needs_two_folds():
    with pytest.raises(ValueError, match="two folds"):
        metrics.kfold_accuracy([0.1, 0.9], [True, False], [0, 0])


def test_tar_at_far_hand_computed():
    genuine = [0.1, 0.2, 0.3, 0.8]
    impostor = [0.25, 0.5, 0.6, 0.7, 0.9]
    scores = genuine + impostor
    same = [True] * 4 + [False] * 5
    # FAR 0: accept <= 0.2 (the first impostor is 0.25): TAR 2/4, threshold midway to 0.25
    assert metrics.tar_at_far(scores, same, 0.0) == pytest.approx((0.5, 0.0, 0.225))
    # FAR <= 0.2 lets one impostor (0.25) in: accept <= 0.3, TAR 3/4, threshold midway to 0.5
    assert metrics.tar_at_far(scores, same, 0.2) == pytest.approx((0.75, 0.2, 0.4))
    assert metrics.tar_at_far(scores, same, 1.0)[0] == 1.0


def test_roc_curve_ends_and_thresholds():
    roc = metrics.roc_curve([0.1, 0.3, 0.2, 0.4], [True, True, False, False])
    np.testing.assert_allclose(roc.far, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(roc.tar, [0, 0.5, 0.5, 1, 1])
    s = np.array([0.1, 0.3, 0.2, 0.4])
    y = np.array([True, True, False, False])
    for far, tar, t in zip(roc.far, roc.tar, roc.thresholds):  # each point is what "score < t" gives
        assert np.mean(s[~y] < t) == far and np.mean(s[y] < t) == tar


# --------------------------------------------------------------------------- open-set 1:N

GALLERY_IDS = np.array(["A", "B", "C"])
MATED = np.array(
    [
        [0.20, 0.50, 0.60],  # A: hit at 0.20
        [0.30, 0.40, 0.90],  # B: rank-1 is A (miss)
        [0.70, 0.80, 0.45],  # C: hit at 0.45
        [0.35, 0.90, 0.90],  # A: hit at 0.35
    ]
)
MATED_IDS = np.array(["A", "B", "C", "A"])
NONMATED = np.array(
    [[0.5, 0.6, 0.7], [0.25, 0.9, 0.9], [0.8, 0.4, 0.9], [0.9, 0.9, 0.65], [0.33, 0.7, 0.7]]
)  # best: .5 .25 .4 .65 .33 -> sorted .25 .33 .4 .5 .65


def _searches():
    m = metrics.search(MATED, GALLERY_IDS)
    n = metrics.search(NONMATED, GALLERY_IDS)
    return m, m.best_id == MATED_IDS, n


def test_search_and_rank1():
    m, hit, n = _searches()
    np.testing.assert_allclose(m.best, [0.2, 0.3, 0.45, 0.35])
    assert list(m.best_id) == ["A", "A", "C", "A"]
    assert metrics.rank1_rate(m, MATED_IDS) == 0.75
    np.testing.assert_allclose(n.best, [0.5, 0.25, 0.4, 0.65, 0.33])


@pytest.mark.parametrize(
    "target, threshold, fpir, fnir",
    [
        (0.1, 0.25, 0.0, 0.75),  # no non-mated may pass: t = lowest (.25); only the .20 hit passes
        (0.2, 0.33, 0.2, 0.75),  # one may pass (.25): t = .33; .35 and .45 hits still rejected
        (0.4, 0.4, 0.4, 0.5),  # two may pass: t = .40; hits .20 and .35 pass
        (1.0, math.inf, 1.0, 0.25),  # all may pass: only the rank-1 miss is a false negative
    ],
)
def test_fnir_at_fpir_hand_computed(target, threshold, fpir, fnir):
    m, hit, n = _searches()
    op = metrics.fnir_at_fpir(m.best, hit, n.best, target)
    assert (op.threshold, op.fpir, op.fnir) == pytest.approx((threshold, fpir, fnir))


def test_threshold_at_fpir_rejects_ties_at_the_threshold():
    # 1 of 4 may pass, but the two lowest are tied: the threshold sits on them and lets neither in
    assert metrics.threshold_at_fpir([0.3, 0.3, 0.5, 0.6], 0.25) == 0.3
    assert metrics.fpir([0.3, 0.3, 0.5, 0.6], 0.3) == 0.0


def test_det_curve_matches_pointwise_definitions():
    m, hit, n = _searches()
    det = metrics.det_curve(m.best, hit, n.best)
    for t, fp, fn in zip(det.thresholds, det.fpir, det.fnir):
        assert fp == metrics.fpir(n.best, t) and fn == pytest.approx(metrics.fnir(m.best, hit, t))
    assert det.fpir[-1] == 1.0 and det.fnir[-1] == 0.25


def test_build_protocol_default_and_multi_ref():
    ids = {"a": ["a1", "a2", "a3"], "b": ["b1"], "c": ["c1", "c2"]}
    p = build_protocol(ids)
    assert p.gallery == [("a", "a1"), ("c", "c1")]
    assert p.mated == [("a", "a2"), ("a", "a3"), ("c", "c2")]
    assert p.nonmated == [("b", "b1")]
    p3 = build_protocol(ids, multi_ref=3)  # at least one image always stays a probe
    assert p3.gallery == [("a", "a1"), ("a", "a2"), ("c", "c1")]
    assert p3.mated == [("a", "a3"), ("c", "c2")]
    assert p3.counts() == {"gallery_identities": 2, "gallery_images": 3, "mated_probes": 2, "nonmated_probes": 1}


def test_templates_are_mean_descriptors():
    d = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]], np.float32)
    t, ids = templates(d, ["x", "y", "x"])
    np.testing.assert_allclose(t, [[3.0, 2.5], [3.0, 2.0]])
    assert list(ids) == ["x", "y"]


def test_score_normalisations():
    gallery = np.array([[0.0], [1.0], [3.0]], np.float32)
    probes = np.array([[0.5], [2.9]], np.float32)
    d = score_matrix(probes, gallery, "none")
    np.testing.assert_allclose(d, [[0.5, 0.5, 2.5], [2.9, 1.9, 0.1]], atol=1e-6)
    # ratio: divided by each probe's second-lowest distance
    np.testing.assert_allclose(score_matrix(probes, gallery, "ratio"), [[1, 1, 5], [2.9 / 1.9, 1, 0.1 / 1.9]], atol=1e-6)
    # z: cohorts are the other templates: 0 -> {1, 3}, 1 -> {1, 2}, 3 -> {3, 2}
    mean, std = znorm_stats(gallery)
    np.testing.assert_allclose(mean, [2, 1.5, 2.5])
    np.testing.assert_allclose(std, [1, 0.5, 0.5])
    np.testing.assert_allclose(score_matrix(probes, gallery, "z")[0], [(0.5 - 2) / 1, (0.5 - 1.5) / 0.5, 0], atol=1e-6)


# --------------------------------------------------------------------------- face choice


class _Det:
    def __init__(self, box, score=1.0):
        self.box, self.score = box, score


def test_detector_chains():
    from openlfr.evaluate.embedding import CHAINS, METHODS, EmbedOptions, fallbacks_of

    assert CHAINS["hog"] == ("hog", "hog_upsample2", "cnn")  # the cached method indices stay valid
    assert METHODS[:5] == ("hog", "hog_upsample2", "cnn", "off_centre", "central_box")
    assert CHAINS["cnn"][0] == "cnn_upsample0" and fallbacks_of("cnn") == ("cnn", "hog", "off_centre", "central_box")
    assert EmbedOptions(detector="cnn").as_dict()["upsample"] == 0
    with pytest.raises(ValueError, match="detector must be one of"):
        EmbedOptions(detector="mtcnn")


def test_nearest_centre_and_covering_rule():
    left = _Det((-24, 76, 76, 166), 2.0)  # a bystander: box does not cover the centre (124.5)
    centre = _Det((96, 82, 195, 180), 0.5)
    assert nearest_centre([left, centre], 250, 250) is centre
    assert nearest_centre([left], 250, 250, covering=True) is None
    assert nearest_centre([left], 250, 250) is left
    assert central_box(250, 250) == (70, 70, 180, 180)
    assert central_box(500, 250) == (140, 70, 360, 180)


# --------------------------------------------------------------------------- real runs on lfw-dev


def _small_pairs(src: Path, dst: Path, folds: int = 2, per_fold: int = 10) -> Path:
    """The first ``per_fold`` matched and mismatched pairs of the first folds of ``src``."""
    _, n, _ = metrics.read_pairs(src)
    lines = [ln for ln in src.read_text().splitlines()[1:] if ln.strip()]
    out = [f"{folds}\t{per_fold}"]
    for f in range(folds):
        base = f * 2 * n
        out += lines[base : base + per_fold] + lines[base + n : base + n + per_fold]
    dst.write_text("\n".join(out) + "\n")
    return dst


@pytest.fixture
def eval_cache(tmp_path, monkeypatch):
    """A fresh descriptor cache for evaluation (model parse caches stay where they are)."""
    d = tmp_path / "cache"
    monkeypatch.setattr("openlfr.evaluate.embedding.cache_dir", lambda: d)
    return d


@pytest.mark.shared
@pytest.mark.slow
def test_cli_evaluate_lfw_small(shared_data, tmp_path, eval_cache):
    from typer.testing import CliRunner

    from openlfr.cli import app

    lfw = shared_data / "lfw-dev"
    pairs = _small_pairs(lfw / "pairs.txt", tmp_path / "pairs.txt")
    plot = tmp_path / "roc.png"
    args = ["evaluate", "lfw", "--images", str(lfw / "images"), "--pairs", str(pairs), "--json", "--plot", str(plot)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    for key in ("accuracy", "accuracy_std", "accuracy_at_0.6", "tar_at_far_0.001", "no_face", "fold_thresholds"):
        assert key in s
    assert s["n_pairs"] == 40 and s["folds"] == 2
    assert s["accuracy"] >= 0.9 and s["accuracy_at_0.6"] >= 0.9
    assert set(s["no_face"]) >= {"hog_upsample2", "cnn", "central_box", "images"}
    assert plot.stat().st_size > 1000
    assert s["cache"]["cached_descriptors"] == 0
    # Second run: every descriptor comes from the cache, same figures; text report mentions the fallbacks.
    r2 = CliRunner().invoke(app, args[:-3] + ["--no-progress"])
    assert r2.exit_code == 0, r2.output
    assert "accuracy (threshold chosen on the other folds)" in r2.stdout
    assert "HOG (upsample 1)" in r2.stdout
    r3 = CliRunner().invoke(app, args[:-2] + ["--no-progress"])
    s3 = json.loads(r3.stdout)
    assert s3["cache"]["cached_descriptors"] == s3["n_images"]
    assert s3["accuracy"] == s["accuracy"] and s3["fold_thresholds"] == s["fold_thresholds"]
    # The CNN first: its own located faces (not the HOG chain's cache), its own fallbacks, same protocol.
    r4 = CliRunner().invoke(app, args[:-2] + ["--no-progress", "--detector", "cnn", "--flip"])
    assert r4.exit_code == 0, r4.output
    s4 = json.loads(r4.stdout)
    assert s4["options"]["detector"] == "cnn" and s4["options"]["flip"] is True
    assert s4["method"].startswith("CNN (MMOD, upsample 0)")
    assert set(s4["no_face"]) == {"cnn", "hog", "off_centre", "central_box", "images"}
    assert s4["cache"]["located"] == s4["n_images"] == s["n_images"] and s4["cache"]["cached_descriptors"] == 0
    assert s4["accuracy"] >= 0.9 and s4["n_pairs"] == 40
    r5 = CliRunner().invoke(app, args[:-3] + ["--no-progress", "--detector", "cnn"])
    assert r5.exit_code == 0 and "The CNN (MMOD) detector (upsample 0) found" in r5.stdout
    assert "method: CNN (MMOD, upsample 0)" in r5.stdout
    r6 = CliRunner().invoke(app, args[:-3] + ["--detector", "mtcnn"])
    assert r6.exit_code == 2 and "mtcnn" in r6.output


def test_cli_evaluate_lfw_malformed_pairs(tmp_path):
    from typer.testing import CliRunner

    from openlfr.cli import app

    bad = tmp_path / "pairs.txt"
    bad.write_text("1\t1\nAnn\t1\tBob\t2\nAnn\t1\tBob\t3\n")
    r = CliRunner().invoke(app, ["evaluate", "lfw", "--images", str(tmp_path), "--pairs", str(bad)])
    assert r.exit_code == 2
    assert "should be a matched pair" in r.output
    missing = tmp_path / "ok.txt"
    missing.write_text("1\t1\nAnn\t1\t2\nAnn\t1\tBob\t3\n")
    r = CliRunner().invoke(app, ["evaluate", "lfw", "--images", str(tmp_path), "--pairs", str(missing)])
    assert r.exit_code == 2 and "3 image(s) named in" in r.output and "are missing" in r.output


@pytest.mark.shared
@pytest.mark.slow
def test_cli_evaluate_identify_small(shared_data, tmp_path, eval_cache):
    from typer.testing import CliRunner

    from openlfr.cli import app

    src = shared_data / "lfw-dev" / "images"
    root = tmp_path / "ids"
    counts = {d.name: len(list(d.iterdir())) for d in src.iterdir()}
    multi = sorted(n for n, c in counts.items() if c >= 3)[:10]
    singles = sorted(n for n, c in counts.items() if c == 1)[:5]
    for name in multi + singles:
        files = sorted((src / name).iterdir())[:3]
        (root / name).mkdir(parents=True)
        for f in files:
            (root / name / f.name).symlink_to(f)
    (root / "Empty_Folder").mkdir()
    plot = tmp_path / "det.png"
    r = CliRunner().invoke(app, ["evaluate", "identify", "--images", str(root), "--json", "--plot", str(plot)])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    for key in ("rank1", "fnir_at_fpir_0.01", "fnir_at_fpir_0.003", "fnir_at_fpir_0.001", "thresholds"):
        assert key in s
    assert set(s["thresholds"]) == {"0.01", "0.003", "0.001"}
    assert (s["gallery_identities"], s["mated_probes"], s["nonmated_probes"]) == (10, 20, 5)
    assert s["rank1"] >= 0.9
    assert s["variant"].startswith("none")
    assert plot.stat().st_size > 1000
    # the non-mated probes nearest the gallery, lowest first, each a single-image identity against a gallery one
    low = s["closest_nonmated"]
    assert len(low) == 5 and [x["score"] for x in low] == sorted(x["score"] for x in low)
    assert {x["probe"] for x in low} == set(singles) and all(x["nearest"] in multi for x in low)
    # Variants reuse the cached descriptors and say what they change.
    r = CliRunner().invoke(app, ["evaluate", "identify", "--images", str(root), "--json", "--multi-ref", "2", "--norm", "ratio"])
    s2 = json.loads(r.stdout)
    assert s2["cache"]["cached_descriptors"] == 35
    assert (s2["gallery_images"], s2["mated_probes"]) == (20, 10)
    assert "multi-ref 2" in s2["variant"] and "ratio" in s2["variant"]
    # ... and give the single-image figures on the same probes, the fair comparison
    assert set(s2["same_probes_single_ref"]) >= {"rank1", "fnir_at_fpir_0.001", "thresholds"}
    # LFW's known label errors merged: none of the pairs is in this slice, so nothing changes, and it says so
    r = CliRunner().invoke(app, ["evaluate", "identify", "--images", str(root), "--merge-label-errors", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "none of the known pairs is here" in r.stdout and f"{s['rank1']:.4f}" in r.stdout


def test_merge_same_person_files_one_person_under_one_name():
    """A known label error (one person under two names) becomes one identity: the first name keeps its
    images first, the second name's follow; a pair of which one name is absent is left alone."""
    from pathlib import Path

    from openlfr.evaluate.lfw_errata import SAME_PERSON, merge_same_person

    assert ("Wang_Yingfan", "Yingfan_Wang") in SAME_PERSON
    ids = {"Wang_Yingfan": [Path("w1"), Path("w2")], "Yingfan_Wang": [Path("y1")], "Noer_Moeis": [Path("n1")],
           "Ann": [Path("a1"), Path("a2")]}
    out, merged = merge_same_person(ids)
    assert out["Wang_Yingfan"] == [Path("w1"), Path("w2"), Path("y1")] and "Yingfan_Wang" not in out
    assert out["Noer_Moeis"] == [Path("n1")] and out["Ann"] == ids["Ann"]  # Noer_Muis absent: nothing to merge
    assert merged == [["Wang_Yingfan", "Yingfan_Wang"]]
    assert ids["Yingfan_Wang"] == [Path("y1")]  # the input is not changed
    p = build_protocol(out)
    assert ("Wang_Yingfan", Path("y1")) in p.mated and all(n != "Yingfan_Wang" for n, _ in p.nonmated)


@pytest.mark.shared
def test_cnn_evaluation_descriptors_are_the_engines(shared_data, eval_cache):
    """`evaluate --detector cnn --flip` measures the engine as users run it: the same descriptors as
    `FaceEngine(detector="cnn", upsample=0, flip=True)` (i.e. `openlfr faces --detector cnn --upsample 0 --flip`)."""
    from openlfr.engine.images import load_image
    from openlfr.engine.pipeline import FaceEngine
    from openlfr.evaluate.embedding import EmbedOptions, embed_images

    paths = sorted((shared_data / "lfw-dev" / "images").glob("Ab*/*.jpg"))[:6]
    emb = embed_images(paths, EmbedOptions(detector="cnn", flip=True), progress=False)
    assert emb.methods == ["cnn_upsample0"] * len(paths)
    engine = FaceEngine(detector="cnn", upsample=0, flip=True)
    for p, want in zip(emb.paths, emb.descriptors):
        faces = engine.analyze(load_image(p))
        got = min(faces, key=lambda f: ((f.box[0] + f.box[2]) / 2 - 124.5) ** 2 + ((f.box[1] + f.box[3]) / 2 - 124.5) ** 2)
        assert np.abs(got.descriptor - want).max() < 1e-6
