"""Parity of our 5-point landmarks and face chips with dlib (dlib-bin) itself."""

from __future__ import annotations

import time

import numpy as np
import pytest

from openlfr.engine import chips as chips_mod
from openlfr.engine import shape_predictor as sp_mod
from openlfr.engine.chips import TEMPLATE_5, chip_details, chip_transform, face_chip, face_chips
from openlfr.engine.models import SHAPE5, model_path
from openlfr.engine.shape_predictor import (
    ShapePredictor,
    load_shape_predictor,
    load_shape_predictor_model,
    read_shape_predictor,
)

import dlib  # a required dependency (dlib-bin): its absence is a failure, not a skip

N_LFW = 30


@pytest.fixture(scope="module")
def ours() -> ShapePredictor:
    return load_shape_predictor()


@pytest.fixture(scope="module")
def dlib_sp():
    return dlib.shape_predictor(str(model_path(SHAPE5)))


@pytest.fixture(scope="module")
def detector():
    return dlib.get_frontal_face_detector()


def _dlib_parts(dlib_sp, img, box) -> tuple[np.ndarray, object]:
    det = dlib_sp(img, dlib.rectangle(*box))
    return np.array([[p.x, p.y] for p in det.parts()], dtype=np.float64), det


def _boxes(detector, img, upsample=0) -> list[tuple[int, int, int, int]]:
    return [(r.left(), r.top(), r.right(), r.bottom()) for r in detector(img, upsample)]


def _fod(landmarks) -> object:
    pts = [dlib.point(int(x), int(y)) for x, y in landmarks]
    return dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1), pts)


def _check_face(ours, dlib_sp, img, box) -> np.ndarray:
    """Landmarks and chip of one face equal dlib's exactly; returns our landmarks."""
    ref, det = _dlib_parts(dlib_sp, img, box)
    got = ours.predict(img, box)
    np.testing.assert_array_equal(got, ref)
    ref_chip = dlib.get_face_chip(img, det, size=150, padding=0.25)
    got_chip = face_chip(img, got)
    assert got_chip.shape == (150, 150, 3) and got_chip.dtype == np.uint8
    assert int((got_chip != ref_chip).sum()) == 0
    return got


def _pyramid_depth(landmarks) -> int:
    d = chip_details(landmarks)
    rect = chips_mod._rect_down(d.rect)
    depth = 0
    while chips_mod._area(rect) > d.rows * d.cols:
        rect = chips_mod._rect_down(rect)
        depth += 1
    return depth


# -- reader and cache ---------------------------------------------------------------------------


def test_reader_parses_the_5_point_model():
    model = read_shape_predictor(model_path(SHAPE5))
    assert model["initial_shape"].shape == (10,)
    assert model["split_idx1"].shape == (15, 500, 15)
    assert model["split_idx2"].shape == (15, 500, 15)
    assert model["split_thresh"].shape == (15, 500, 15)
    assert model["leaf_values"].shape == (15, 500, 16, 10)
    assert model["anchor_idx"].shape == (15, 800)
    assert model["deltas"].shape == (15, 800, 2)
    assert model["leaf_values"].dtype == np.float32
    assert 0 <= model["anchor_idx"].min() and model["anchor_idx"].max() < 5
    cached = load_shape_predictor_model()
    for key, value in model.items():
        np.testing.assert_array_equal(cached[key], value)
    sp = ShapePredictor(model)
    assert (sp.num_cascades, sp.num_trees, sp.num_parts, sp.depth) == (15, 500, 5, 4)


def test_second_load_comes_from_cache(tmp_path, monkeypatch):
    model = load_shape_predictor_model()
    calls = []

    def fake_read(path):
        calls.append(path)
        return model

    monkeypatch.setenv("OPENLFR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(sp_mod, "read_shape_predictor", fake_read)
    first = sp_mod.load_shape_predictor_model()
    second = sp_mod.load_shape_predictor_model()
    assert len(calls) == 1, "the second load must not parse the file again"
    assert list(tmp_path.glob("shape_predictor-*.npz"))
    for key, value in model.items():
        np.testing.assert_array_equal(first[key], value)
        np.testing.assert_array_equal(second[key], value)


def test_load_shape_predictor_is_shared():
    assert load_shape_predictor() is load_shape_predictor()


# -- landmarks and chips against dlib -----------------------------------------------------------


def test_astronaut_landmarks_and_chips(astronaut, ours, dlib_sp, detector):
    boxes = _boxes(detector, astronaut, 1)
    assert boxes
    for box in boxes:
        lm = _check_face(ours, dlib_sp, astronaut, box)
        _, det = _dlib_parts(dlib_sp, astronaut, box)
        ref = dlib.get_face_chip_details(det, 150, 0.25)
        got = chip_details(lm)
        assert got.rect == (ref.rect.left(), ref.rect.top(), ref.rect.right(), ref.rect.bottom())
        assert got.angle == ref.angle
        grey = np.ascontiguousarray(astronaut.mean(axis=2).astype(np.uint8))
        np.testing.assert_array_equal(ours.predict(grey, box), _dlib_parts(dlib_sp, grey, box)[0])


def test_large_face_uses_the_pyramid(astronaut, ours, dlib_sp, detector):
    big = np.ascontiguousarray(np.repeat(np.repeat(astronaut, 3, axis=0), 3, axis=1))
    boxes = _boxes(detector, big, 0)
    assert boxes
    depths = [_pyramid_depth(_check_face(ours, dlib_sp, big, box)) for box in boxes]
    assert max(depths) >= 1


def test_box_partly_outside_the_image(astronaut, ours, dlib_sp):
    h, w = astronaut.shape[:2]
    for box in [(-60, -40, 90, 110), (w - 100, h - 80, w + 60, h + 90), (-30, 200, 120, 340), (400, -50, 560, 100)]:
        lm = _check_face(ours, dlib_sp, astronaut, box)
        assert lm.shape == (5, 2)


def test_landmarks_are_float32_exact(astronaut, ours, dlib_sp):
    # With a box ~4 million pixels wide, dlib's integer output resolves every bit of the float32
    # shape, so equality here means the cascade reproduced dlib's float32 arithmetic exactly.
    rng = np.random.default_rng(7)
    size = 1 << 22
    for _ in range(5):
        fx, fy = rng.uniform(0.3, 0.7, 2)
        left, top = -int(fx * size), -int(fy * size)
        box = (left, top, left + size, top + size)
        np.testing.assert_array_equal(ours.predict(astronaut, box), _dlib_parts(dlib_sp, astronaut, box)[0])


@pytest.mark.shared
def test_lfw_parity(shared_data, ours, dlib_sp, detector):
    from skimage import io

    files = sorted((shared_data / "lfw-dev" / "images").glob("*/*.jpg"))
    if not files:
        pytest.skip("no LFW images in the shared data folder")
    step = max(1, len(files) // N_LFW)
    t_ours = t_dlib = 0.0
    faces = 0
    for path in files[::step][:N_LFW]:
        img = io.imread(path)
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        img = np.ascontiguousarray(img[..., :3])
        for box in _boxes(detector, img, 0):
            t0 = time.perf_counter()
            got = ours.predict(img, box)
            t_ours += time.perf_counter() - t0
            t0 = time.perf_counter()
            ref, det = _dlib_parts(dlib_sp, img, box)
            t_dlib += time.perf_counter() - t0
            np.testing.assert_array_equal(got, ref)
            ref_chip = dlib.get_face_chip(img, det, size=150, padding=0.25)
            assert int((face_chip(img, got) != ref_chip).sum()) == 0, path.name
            faces += 1
    assert faces >= N_LFW // 2
    print(
        f"\n5-point landmarks on {faces} LFW faces: ours {1e3 * t_ours / faces:.2f} ms/face, "
        f"dlib {1e3 * t_dlib / faces:.2f} ms/face"
    )


def test_chip_size_and_padding_follow_dlib(astronaut, ours, dlib_sp, detector):
    box = _boxes(detector, astronaut, 1)[0]
    lm, det = _dlib_parts(dlib_sp, astronaut, box)
    for size, padding in [(200, 0.2), (80, 0.0), (151, 0.33)]:
        ref = dlib.get_face_chip(astronaut, det, size=size, padding=padding)
        got = face_chip(astronaut, lm, size=size, padding=padding)
        assert got.shape == (size, size, 3)
        np.testing.assert_array_equal(got, ref)


def test_face_chips_batch_and_joint(astronaut, ours, dlib_sp):
    big = np.ascontiguousarray(np.repeat(np.repeat(astronaut, 3, axis=0), 3, axis=1))
    large = ours.predict(big, (538, 251, 796, 509))  # needs a pyramid level
    small = np.round((np.asarray(TEMPLATE_5) - 0.5) * 90 + [300, 1200]).astype(np.int64)  # does not
    rotated = np.round((np.asarray(TEMPLATE_5) - 0.5) @ [[0.8, -0.6], [0.6, 0.8]] * 400 + [1400, 700])
    lms = [large, small, rotated]
    per_face = face_chips(big, lms)
    assert per_face.shape == (3, 150, 150, 3)
    for lm, chip in zip(lms, per_face):
        np.testing.assert_array_equal(chip, dlib.get_face_chip(big, _fod(lm)))
    joint = face_chips(big, lms, joint=True)
    refs = dlib.get_face_chips(big, dlib.full_object_detections([_fod(lm) for lm in lms]))
    for chip, ref in zip(joint, refs):
        np.testing.assert_array_equal(chip, np.asarray(ref))
    assert face_chips(big, []).shape == (0, 150, 150, 3)


def test_chip_transform_maps_template_onto_landmarks(astronaut, ours):
    lm = ours.predict(astronaut, (175, 76, 265, 166))
    t = chip_transform(lm)
    assert t.shape == (2, 3)
    tmpl = (np.asarray(TEMPLATE_5) + 0.25) / 1.5 * 149  # dlib samples corners at 0 and size - 1
    mapped = tmpl @ t[:, :2].T + t[:, 2]
    assert np.abs(mapped - lm).max() < 2


def test_bad_inputs(astronaut, ours):
    with pytest.raises(ValueError):
        ours.predict(astronaut.astype(np.float32), (0, 0, 10, 10))
    with pytest.raises(ValueError):
        face_chip(astronaut, np.zeros((4, 2)))
    with pytest.raises(ValueError):
        face_chip(astronaut[..., 0], np.zeros((5, 2)))


@pytest.mark.slow
def test_reader_and_predictor_on_the_68_point_model(astronaut, detector, tmp_path_factory, monkeypatch):
    """The reader handles the fourth model file too (openlfr does not use it: non-commercial)."""
    from openlfr.engine.cache import cached
    from openlfr.engine.models import MODELS

    name = "shape_predictor_68_face_landmarks.dat"
    model = cached("shape_predictor68", MODELS[name].sha256, lambda: sp_mod.read_shape_predictor(model_path(name)))
    assert model["leaf_values"].shape[-1] == 136 and model["initial_shape"].shape == (136,)
    ours68 = ShapePredictor(model)
    theirs = dlib.shape_predictor(str(model_path(name)))
    for box in _boxes(detector, astronaut, 1):
        expected, _ = _dlib_parts(theirs, astronaut, box)
        np.testing.assert_array_equal(ours68.predict(astronaut, box), expected)
