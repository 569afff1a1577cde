"""GPU runtime code paths, tested on the CPU: MMOD on torch (parity with onnxruntime, the pyramid
on the device, batches), the automatic choice of runtime and its override, fp16/bf16 accuracy
reports, CUDA-graph buckets."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from openlfr.engine import runtime  # noqa: E402
from openlfr.engine.detection import iou, make_detector  # noqa: E402
from openlfr.engine.mmod import MmodDetector, OnnxMmodNetwork  # noqa: E402
from openlfr.engine.torch_mmod import TorchMmodDetector, TorchMmodNetwork  # noqa: E402
from openlfr.engine.torch_runtime import GRAPH_SIZES, TorchDescriptorModel, graph_bucket, precision_report  # noqa: E402


@pytest.fixture(scope="module")
def images(astronaut):
    import cv2

    group = np.zeros((300, 700, 3), np.uint8) + 90  # two faces on a plain background, 300x700
    face = cv2.resize(astronaut[0:260, 120:360], (200, 216))
    group[40:256, 30:230] = face
    group[60:276, 400:600] = face[:, ::-1]
    return [astronaut, group]


@pytest.fixture(scope="module")
def onnx_det():
    return MmodDetector(upsample=0)


def same(a, b, score_tol):
    assert [d.box for d in a] == [d.box for d in b]
    assert all(abs(x.score - y.score) <= score_tol for x, y in zip(a, b))


def test_torch_network_matches_onnx():
    x = np.random.default_rng(0).normal(0, 0.3, (1, 3, 181, 263)).astype(np.float32)
    a = OnnxMmodNetwork(1)(x)
    b = TorchMmodNetwork(device="cpu")(x)
    assert a.shape == b.shape == (20, 30)
    assert np.abs(a - b).max() < 1e-4
    two = TorchMmodNetwork(device="cpu").run_batch(np.concatenate([x, x[:, :, ::-1].copy()]))
    assert two.shape == (2, 20, 30) and np.abs(two[0] - b).max() < 1e-5


def test_torch_detector_same_boxes_as_onnx(images, onnx_det):
    det = TorchMmodDetector(upsample=0, device="cpu")
    assert det.pyramid == "exact" and det.runtime == "torch-cpu"
    found = 0
    for img in images:
        want = onnx_det.detect(img)
        found += len(want)
        same(det.detect(img), want, 1e-4)
    assert found >= 3  # the astronaut and both faces of the group
    # several frames in one network call (same size), and of different sizes
    batch = det.detect_batch([images[1], images[0], images[1][:, ::-1].copy(), np.zeros((5, 5, 3), np.uint8)])
    same(batch[0], onnx_det.detect(images[1]), 1e-4)
    same(batch[1], onnx_det.detect(images[0]), 1e-4)
    assert len(batch[2]) == 2 and batch[3] == []


def test_device_pyramid_same_boxes(images, onnx_det):
    det = TorchMmodDetector(upsample=0, device="cpu", pyramid="device")  # the GPU's path, on the CPU
    for img in images:
        same(det.detect(img), onnx_det.detect(img), 2e-3)
    up = TorchMmodDetector(upsample=1, min_face=60, device="cpu", pyramid="device")
    ref = MmodDetector(upsample=1, min_face=60).detect(images[1])
    got = up.detect(images[1])
    assert len(got) == len(ref) == 2 and all(iou(g.box, r.box) > 0.9 for g, r in zip(got, ref))
    with pytest.raises(ValueError):
        TorchMmodDetector(device="cpu", pyramid="gpu")


def test_padded_shapes_give_the_same_detections(images):
    """On CUDA each canvas is padded to multiples of 64 px (few shapes for cuDNN to tune); the
    padding is masked layer by layer, so windows cut anywhere (faces at their edges) and batches
    of mixed sizes give exactly the unpadded detections."""
    plain = TorchMmodDetector(upsample=0, device="cpu", shape_step=None)
    padded = TorchMmodDetector(upsample=0, device="cpu", shape_step=64)
    assert TorchMmodDetector(device="cpu").shape_step is None  # CPU default: no padding
    group = images[1]
    windows = [group, group[30:290, 0:250], group[25:290, 380:630], group[50:300, 380:620], group[:, 130:480],
               images[0][20:400, 60:420]]
    found = 0
    for w in windows:
        want = plain.detect(w)
        found += len(want)
        same(padded.detect(w), want, 0.0)
    assert found >= 5
    from openlfr.engine.torch_mmod import padded_canvas

    shapes = [tuple(padded_canvas(padded.tiled_input(w), 64).tensor.shape) for w in windows]
    sizes = [tuple(padded.tiled_input(w).tensor.shape) for w in windows]
    assert len(set(shapes)) < len(set(sizes))  # windows of different sizes share a network call
    batch = padded.detect_batch(windows)
    for w, got in zip(windows, batch):
        same(got, plain.detect(w), 0.0)


def test_cudnn_tuning_off_is_shared_and_restored():
    """The detector's windows change shape all the time: with ``cudnn_tuning=False`` its calls run
    with cuDNN's benchmark mode off, and the flag comes back when the last thread leaves."""
    import threading

    import torch

    from openlfr.engine.torch_mmod import cudnn_tuning_off

    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        inside, go = [], threading.Barrier(3)

        def worker():
            with cudnn_tuning_off():
                go.wait()
                inside.append(torch.backends.cudnn.benchmark)
                go.wait()

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        go.wait()  # both inside
        assert torch.backends.cudnn.benchmark is False
        go.wait()
        for t in threads:
            t.join()
        assert inside == [False, False] and torch.backends.cudnn.benchmark is True
        det = TorchMmodDetector(upsample=0, device="cpu", cudnn_tuning=False)  # accepted; CPU runs as before
        assert det.network.cudnn_tuning is False
    finally:
        torch.backends.cudnn.benchmark = before


def test_bf16_detector_close(images, onnx_det):
    det = TorchMmodDetector(upsample=0, device="cpu", precision="bf16")
    for img in images:
        want, got = onnx_det.detect(img), det.detect(img)
        assert len(got) == len(want)
        # scores within bf16 rounding; a box can move by one output cell (8 px at its level)
        assert all(iou(g.box, w.box) > 0.6 and abs(g.score - w.score) < 0.05 for g, w in zip(got, want))
        assert all(max(abs(p - q) for p, q in zip(g.box, w.box)) <= 8 for g, w in zip(got, want))


def test_make_detector_runtime_choice(monkeypatch):
    monkeypatch.delenv(runtime.RUNTIME_ENV, raising=False)
    monkeypatch.setattr(runtime, "cuda_available", lambda: False)
    auto = make_detector("cnn", upsample=0)
    assert type(auto) is MmodDetector and auto.runtime == "onnxruntime-cpu"
    assert isinstance(make_detector("cnn", upsample=0, runtime="torch"), TorchMmodDetector)
    monkeypatch.setattr(runtime, "cuda_available", lambda: True)  # a GPU: torch, unless overridden
    assert isinstance(make_detector("cnn", upsample=0), TorchMmodDetector)
    monkeypatch.setenv(runtime.RUNTIME_ENV, "onnx")
    assert type(make_detector("cnn", upsample=0)) is MmodDetector
    with pytest.raises(ValueError, match="fp32 only"):
        make_detector("cnn", runtime="onnx", precision="fp16")
    with pytest.raises(ValueError, match="unknown detector runtime"):
        make_detector("cnn", runtime="tpu")


def test_make_descriptor_runtime_override(monkeypatch):
    from openlfr.engine.descriptor import make_descriptor

    monkeypatch.setattr(runtime, "cuda_available", lambda: False)
    monkeypatch.setenv("OPENLFR_RUNTIME", "torch")
    assert make_descriptor("auto").runtime == "torch-cpu"
    monkeypatch.setenv("OPENLFR_RUNTIME", "onnx")
    assert make_descriptor("auto").runtime == "onnxruntime-cpu"
    monkeypatch.delenv("OPENLFR_RUNTIME")
    assert make_descriptor("auto").runtime == "onnxruntime-cpu"  # no GPU here


def test_one_runtime_and_device_choice():
    """engine/runtime.py alone decides onnxruntime or torch and, for torch, CPU or CUDA: every
    torch network (and the torch search index) asks ``torch_device``."""
    from pathlib import Path

    import openlfr

    pkg = Path(openlfr.__file__).parent
    deciding = sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*.py") if "cuda.is_available()" in p.read_text())
    assert deciding == ["engine/runtime.py"]
    assert runtime.torch_device("cpu") == torch.device("cpu")
    assert runtime.torch_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    net = TorchDescriptorModel(device="cpu")
    assert net.device == torch.device("cpu")


def test_precision_report_bf16(astronaut):
    import cv2

    rng = np.random.default_rng(0)
    base = cv2.resize(astronaut[20:220, 150:330], (150, 150))
    chips = np.stack([np.clip(base.astype(int) + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8) for _ in range(5)])
    chips = np.concatenate([chips, cv2.resize(astronaut[200:400, 0:200], (150, 150))[None]])
    rep = precision_report(chips, "bf16", device="cpu")
    assert rep["precision"] == "bf16" and rep["chips"] == 6 and rep["pairs"] == 15
    assert 0 < rep["max_abs"] < 0.01 and rep["max_abs"] <= rep["max_l2"] < 0.05
    assert rep["mean_l2"] <= rep["max_l2"] and rep["max_rel_l2"] < 0.05
    assert rep["max_pair_distance_change"] < 0.05 and rep["pairs_changing_decision"] == 0


def test_graph_buckets_and_flags():
    assert graph_bucket(1) == 1 and graph_bucket(3) == 4 and graph_bucket(1000) == 1024 and graph_bucket(5000) == 1024
    assert graph_bucket(20, (1, 8, 32)) == 32 and GRAPH_SIZES[-1] == 1024
    with pytest.raises(ValueError, match="CUDA"):
        TorchDescriptorModel("fp32", device="cpu", cuda_graphs=True)
    m = TorchDescriptorModel("fp32", device="cpu", batch_size=48)
    assert m.graph_sizes == (1, 2, 4, 8, 16, 32, 48) and not m.compiled
    assert TorchDescriptorModel("fp32", device="cpu").graph_sizes == GRAPH_SIZES[:6]  # CPU default batch 32
    big = TorchDescriptorModel("fp32", device="cpu", batch_size=4096).graph_sizes
    assert big[-3:] == (1024, 2048, 4096) and graph_bucket(2048, big) == 2048  # a 2,048 batch is not padded to 4,096


def test_batching_detector_many_threads(images, onnx_det):
    from concurrent.futures import ThreadPoolExecutor

    from openlfr.engine.torch_mmod import BatchingDetector

    shared = BatchingDetector(TorchMmodDetector(upsample=0, device="cpu"), max_batch=4, wait_ms=150)
    try:
        work = [images[i % 2] for i in range(6)]
        with ThreadPoolExecutor(6) as pool:  # six cameras at once
            got = list(pool.map(shared.detect, work))
        for img, dets in zip(work, got):
            same(dets, onnx_det.detect(img), 1e-4)
        assert shared.images == 6 and shared.batches < 6  # some frames shared a call
    finally:
        shared.close()
    with pytest.raises(RuntimeError, match="stopped"):
        shared.detect(images[0])


def test_scheduler_windows_batch_the_cnn_without_a_threshold(images, onnx_det):
    """The windows around two tracks go to the torch CNN's ``detect_batch`` (which takes no
    threshold: the CNN's windows have none), directly and through a ``BatchingDetector``."""
    from openlfr.engine.batching import BatchingDetector
    from openlfr.live.scheduler import DetectionScheduler

    group = images[1]
    det = TorchMmodDetector(upsample=0, device="cpu")
    shared = BatchingDetector(det, max_batch=4, wait_ms=1)
    try:
        for d in (det, shared):
            s = DetectionScheduler(d, every=100, track_every=1, scale=1.0, motion=False, track_face_px=200)
            scan = s.step(group, 0, [])
            assert scan.kind == "scan" and len(scan.detections) == 2
            st = s.step(group, 1, [np.array(x.box, float) for x in scan.detections])
            assert st.kind == "windows" and len(st.searched) == 2
            assert len(st.detections) == 2  # each face found again in its window (scaled: boxes move a pixel)
            assert all(max(iou(a.box, b.box) for b in st.detections) > 0.8 for a in scan.detections)
        assert shared.images == 3 and shared.batches == 2  # the scan, then both windows in one call
    finally:
        shared.close()
