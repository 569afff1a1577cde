"""Chips cut on the device (engine/torch_chips.py) against dlib's own chips, on real faces,
through the CPU fallback: pixels within rounding, descriptors within 0.01 of the exact chips."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import dlib  # a required dependency (dlib-bin): its absence is a failure, not a skip

from openlfr.engine.models import SHAPE5, model_path  # noqa: E402
from openlfr.engine.torch_chips import DeviceChipWarper, plan_chip, plan_chips, pyramid_down2  # noqa: E402


@pytest.fixture(scope="module")
def faces(astronaut):
    """(image, dlib landmarks, dlib chip) of real faces: the astronaut at 1x (direct sampling),
    3x (a pyramid level), a face cut by the frame edge, Grace Hopper, and LFW faces if present."""
    from openlfr.engine.samples import grace_hopper

    sp = dlib.shape_predictor(str(model_path(SHAPE5)))
    det = dlib.get_frontal_face_detector()
    out = []
    big = np.ascontiguousarray(np.repeat(np.repeat(astronaut, 3, axis=0), 3, axis=1))
    edge = np.ascontiguousarray(astronaut[60:, 140:])  # the face close to the left/top edges
    for img in (astronaut, big, edge, np.ascontiguousarray(grace_hopper())):
        for r in det(img, 1):
            shape = sp(img, r)
            pts = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
            out.append((img, pts, np.asarray(dlib.get_face_chip(img, shape, size=150, padding=0.25))))
    return out


def test_plan_levels_follow_dlib(faces):
    halvings = [plan_chip(img.shape, pts).halvings for img, pts, _ in faces]
    assert 0 in halvings and max(halvings) >= 1  # both code paths are exercised


def test_vectorised_plans_agree_with_dlibs_geometry(faces):
    """``plan_chips`` (numpy, closed form) against ``plan_chip`` (dlib's operation order) on the
    real faces and on faces moved, turned and scaled at random, partly out of the frame."""
    rng = np.random.default_rng(3)
    cases = [(img.shape, pts) for img, pts, _ in faces]
    base = faces[0][1]
    for _ in range(200):
        a, s = rng.uniform(-0.6, 0.6), rng.uniform(0.2, 6.0)
        rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        pts = (base - base.mean(0)) @ rot.T + rng.uniform(-100, 700, 2)
        cases.append(((540, 960, 3), pts))
    for shape in {c[0] for c in cases}:
        group = [p for sh, p in cases if sh == shape]
        crops, halvings, affines = plan_chips(shape, np.stack(group))
        for k, pts in enumerate(group):
            ref = plan_chip(shape, pts)
            assert tuple(crops[k]) == ref.crop and halvings[k] == ref.halvings
            np.testing.assert_allclose(affines[k], np.array(ref.affine), atol=1e-6)


def test_pyramid_down2_is_dlibs(astronaut):
    from openlfr.engine.chips import pyramid_down2 as ref

    t = torch.from_numpy(astronaut).permute(2, 0, 1).float()
    got = pyramid_down2(t).permute(1, 2, 0).to(torch.uint8).numpy()
    assert np.array_equal(got, ref(astronaut))


def test_device_chips_match_dlib_chips(faces):
    from openlfr.engine.descriptor import DescriptorModel

    warper = DeviceChipWarper("cpu")
    ref_chips, got_chips = [], []
    for img, pts, ref in faces:
        got = warper.chips(img, [pts])
        assert got.shape == (1, 150, 150, 3) and got.dtype == torch.uint8
        got = got[0].numpy()
        diff = np.abs(got.astype(int) - ref.astype(int))
        assert diff.max() <= 2, diff.max()  # float32 interpolation against dlib's doubles
        assert (diff > 0).mean() < 0.05
        ref_chips.append(ref)
        got_chips.append(got)
    m = DescriptorModel()
    d = np.linalg.norm(m.compute(np.stack(ref_chips)) - m.compute(np.stack(got_chips)), axis=1)
    assert d.max() < 0.01, d


def test_several_faces_of_one_frame_in_one_call(faces):
    img, pts, ref = faces[0]
    # the same face three times, one of them shifted off the frame: one batched call
    shifted = pts + np.array([-400.0, 0.0])
    got = DeviceChipWarper("cpu").chips(torch.from_numpy(img), [pts, shifted, pts]).numpy()
    assert np.array_equal(got[0], got[2])
    assert np.abs(got[0].astype(int) - ref.astype(int)).max() <= 2
    from openlfr.engine.chips import face_chip

    ref_off = face_chip(img, shifted)  # mostly outside: dlib's zeros where it leaves the image
    assert np.abs(got[1].astype(int) - ref_off.astype(int)).max() <= 2


def test_bad_frame_is_refused():
    with pytest.raises(ValueError):
        DeviceChipWarper("cpu").chips(np.zeros((10, 10), np.uint8), [np.zeros((5, 2))])
