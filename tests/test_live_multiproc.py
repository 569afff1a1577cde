"""The processes shape of a live run (live/multiproc): camera processes around one inference
service give the threaded run's alerts, stop cleanly (no process or shared-memory segment
left), and survive a camera process being killed; the shape is chosen from the hardware."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from openlfr.live.config import RunConfig
from openlfr.live.multiproc import choose_shape
from openlfr.live.multiproc.shape import process_count
from openlfr.live.multiproc.shm import SlotRing


def left(names) -> list[str]:
    """Those of ``names`` still in /dev/shm (other runs on the machine may hold their own)."""
    assert names
    return [n for n in names if (Path("/dev/shm") / n.lstrip("/")).exists()]


def test_choose_shape_from_hardware():
    assert choose_shape("auto", 1, cores=64, cuda=True) == "threads"  # one camera: the simple path
    assert choose_shape("auto", 8, cores=2, cuda=True) == "threads"  # too few cores for processes
    assert choose_shape("auto", 2, cores=16, cuda=True) == "processes"
    assert choose_shape("auto", 3, cores=16, cuda=False) == "threads"
    assert choose_shape("auto", 8, cores=16, cuda=False) == "processes"
    assert choose_shape("processes", 1, cores=2, cuda=False) == "processes"
    with pytest.raises(ValueError):
        choose_shape("fibres", 2)
    assert process_count(32, cores=16) == 15 and process_count(3, cores=16) == 3 and process_count(5, 2) == 2
    assert RunConfig(sources=["a.mp4"]).shape == "auto"
    with pytest.raises(ValueError):
        RunConfig(sources=["a.mp4"], shape="fibres")


def test_slot_ring_round_trip_and_unlink():
    ring = SlotRing.create(3, 64 * 64 * 3)
    assert left([ring.name]) == [ring.name]
    other = SlotRing.attach(*ring.spec())
    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    slot = other.acquire()
    shape, dtype = other.write(slot, img)
    assert np.array_equal(ring.view(slot, shape, dtype), img)  # the other side sees it, no copy sent
    other.release(slot)
    assert not ring.fits(64 * 64 * 3 + 1)
    with pytest.raises(ValueError):
        ring.view(3, (1,), np.uint8)
    assert other.close() and ring.close()
    assert left([ring.name]) == []


# ---------------------------------------------------------------------------------------------
# On the shared Hamilton clip (skipped without ../shared)


def _cfg(video: Path, **kw) -> RunConfig:
    clip = str(video / "hamilton_clip_640x360.mp4")
    return RunConfig(sources=[f"a={clip}", f"b={clip}"], watchlist=video / "hamilton_refs",
                     alerts={"threshold": 0.6}, **kw)


def _alerts(events) -> list[tuple]:
    return sorted((e["camera"], e["subject"], e["frame"], round(e["distance"], 3)) for e in events if e["event"] == "alert")


@pytest.fixture(scope="module")
def hamilton(shared_data):
    video = shared_data / "video"
    if not (video / "hamilton_clip_640x360.mp4").exists():
        pytest.skip("hamilton clip absent")
    return video


@pytest.fixture(scope="module")
def watchlist(hamilton):
    from openlfr.engine.pipeline import FaceEngine
    from openlfr.watchlist.enrol import load_watchlist

    wl, _ = load_watchlist(hamilton / "hamilton_refs", FaceEngine(detector="hog", upsample=1))
    return wl


@pytest.fixture(scope="module")
def threaded(hamilton, watchlist):
    from openlfr.live.runner import LiveRunner

    events: list[dict] = []
    r = LiveRunner(_cfg(hamilton, max_frames=100), on_event=events.append, watchlist=watchlist)
    r.prepare()
    return r.run(), events


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_processes_give_the_threaded_alerts(hamilton, watchlist, threaded):
    from openlfr.live.multiproc.runner import ProcessRunner

    ref_summary, ref_events = threaded
    assert "lin-manuel-miranda" in {a[1] for a in _alerts(ref_events)}
    events: list[dict] = []
    r = ProcessRunner(_cfg(hamilton, max_frames=100), on_event=events.append, watchlist=watchlist, processes=2)
    r.prepare()
    s = r.run()
    assert _alerts(events) == _alerts(ref_events)
    alerts = [e for e in events if e["event"] == "alert"]
    assert sorted(e["alert"] for e in alerts) == list(range(1, len(alerts) + 1))  # one numbering for the run
    for key in ("frames", "alerts", "alerts_per_subject", "dropped_frames", "threshold"):
        assert s[key] == ref_summary[key], key
    assert s["shape"] == "processes" and len(s["processes"]) == 2 and s["restarts"] == 0
    assert s["detect_in"] == "camera" and s["service"]["detect_calls"] == 0  # RetinaFace in each camera (a CPU)
    assert all(p["local_detector_cpu_s"] > 0 for p in s["processes"])
    assert {p["pid"] for p in s["processes"]}.isdisjoint({os.getpid()})  # really other processes
    assert all(p["local_detector_cpu_s"] > 0 for p in s["processes"])  # each camera's own detector, timed
    assert s["service"]["faces"] == s["embedded"] > 0 and s["service"]["oversize"] == 0
    assert [c["name"] for c in s["cameras"]] == ["a", "b"] and all(c["frames"] == 100 for c in s["cameras"])
    assert mp.active_children() == [] and left(r.segments) == []


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_processes_fuse_the_second_model_as_threads_do(hamilton):
    """At the default (calibrated, fused) scoring, a camera process cuts and describes the second
    model's crops itself and decides as the threaded shape does: same alerts, same shots with SFace."""
    from openlfr.engine.pipeline import FaceEngine
    from openlfr.engine.sface import load_second_model
    from openlfr.live.multiproc.runner import ProcessRunner
    from openlfr.live.runner import LiveRunner
    from openlfr.watchlist.enrol import load_watchlist

    if load_second_model("auto") is None:
        pytest.skip("SFace is not installed")
    wl, _ = load_watchlist(hamilton / "hamilton_refs", FaceEngine())
    assert wl.n_second == wl.n_templates == 4

    def cfg():
        return RunConfig(sources=[f"a={hamilton / 'hamilton_clip_640x360.mp4'}"], watchlist=hamilton / "hamilton_refs",
                         max_frames=100)

    ref_events: list[dict] = []
    t = LiveRunner(cfg(), on_event=ref_events.append, watchlist=wl)
    t.prepare()
    ref = t.run()
    events: list[dict] = []
    r = ProcessRunner(cfg(), on_event=events.append, watchlist=wl, processes=1)
    r.prepare()
    s = r.run()
    for ev in (ref_events, events):
        assert ev[0]["event"] == "start" and ev[0]["second_model"] == "sface" and ev[0]["second_templates"] == 4
    assert _alerts(events) == _alerts(ref_events)
    assert "lin-manuel-miranda" in {a[1] for a in _alerts(events)}
    assert s["embedded_second"] == ref["embedded_second"] > 0
    assert s["embedded_second"] <= s["embedded"]
    assert mp.active_children() == [] and left(r.segments) == []


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_retina_in_the_service_gives_the_threaded_alerts(hamilton, watchlist, threaded):
    """``detect_in="service"`` (the shape a CUDA machine takes by itself): the camera processes
    send their scans and windows to the inference service, whose one RetinaFace batches the two
    cameras' images, and the alerts are the threaded run's."""
    from openlfr.live.multiproc.runner import ProcessRunner

    ref_summary, ref_events = threaded
    events: list[dict] = []
    r = ProcessRunner(_cfg(hamilton, max_frames=100, detect_in="service"), on_event=events.append, watchlist=watchlist,
                      processes=2)
    r.prepare()
    s = r.run()
    assert "lin-manuel-miranda" in {a[1] for a in _alerts(events)}
    assert _alerts(events) == _alerts(ref_events)
    for key in ("frames", "alerts", "alerts_per_subject", "faces_seen"):
        assert s[key] == ref_summary[key], key
    assert s["detect_in"] == "service" and s["restarts"] == 0
    svc = s["service"]
    assert svc["detect_images"] >= sum(c["scans"] for c in s["cameras"]) > 0  # every scan (and window) was the service's
    assert svc["detect_images"] > svc["detect_calls"]  # windows went several to a request
    assert 0 < svc["detect_batches"] <= svc["detect_images"] and svc["oversize"] == 0
    assert svc["detect_cpu_s"] > 0  # the batching thread's CPU, counted as the service's detector's
    assert all(p["local_detector_cpu_s"] == 0 for p in s["processes"])  # no RetinaFace ran in a camera process
    assert mp.active_children() == [] and left(r.segments) == []


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_camera_process_restarts_without_losing_the_other(hamilton, watchlist, threaded):
    from openlfr.live.multiproc.runner import ProcessRunner

    _, ref_events = threaded
    events: list[dict] = []
    r = ProcessRunner(_cfg(hamilton, max_frames=100), on_event=events.append, watchlist=watchlist, processes=2)
    r.prepare()
    killed: list[int] = []

    def killer():  # kill camera b's process once it is running and has done some frames
        end = time.monotonic() + 300
        while time.monotonic() < end:
            g = r.groups[1] if len(r.groups) > 1 else None
            if g is not None and g.pid and r.stats[1].frames >= 5:
                os.kill(g.pid, signal.SIGKILL)
                killed.append(g.pid)
                return
            time.sleep(0.05)

    t = threading.Thread(target=killer)
    t.start()
    s = r.run()
    t.join()
    assert killed, "camera b's process was never seen running"
    assert s["restarts"] == 1
    died = [e for e in events if e["event"] == "source" and e["camera"] == "b" and e["state"] == "error"]
    assert died and "died" in died[0]["message"] and "restarting" in died[0]["message"]
    # camera a never noticed: its alerts are the threaded run's
    assert [a for a in _alerts(events) if a[0] == "a"] == [a for a in _alerts(ref_events) if a[0] == "a"]
    cams = {c["name"]: c for c in s["cameras"]}
    assert cams["a"]["frames"] == 100
    assert cams["b"]["frames"] >= 100  # the restarted process read its file again, to the end
    assert {a[1] for a in _alerts(events) if a[0] == "b"} >= {"lin-manuel-miranda"}
    assert killed[0] not in {p["pid"] for p in s["processes"]}
    assert len(r.segments) == 6  # 2 rings per process, and 2 more for the restarted one
    assert mp.active_children() == [] and left(r.segments) == []


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_stop_mid_run_is_clean(hamilton, watchlist):
    from openlfr.live.multiproc.runner import ProcessRunner

    events: list[dict] = []
    r = ProcessRunner(_cfg(hamilton, realtime=True), on_event=events.append, watchlist=watchlist, processes=2)
    r.prepare()

    def stopper():
        end = time.monotonic() + 300
        while time.monotonic() < end and not (len(r.stats) == 2 and all(st.frames >= 3 for st in r.stats)):
            time.sleep(0.05)
        r.stop()

    t = threading.Thread(target=stopper)
    t.start()
    s = r.run()
    t.join()
    assert s["interrupted"] and s["restarts"] == 0
    assert len(s["processes"]) == 2  # both sent their summary: stopped, not killed
    assert all(0 < c["frames"] < 275 for c in s["cameras"])
    assert mp.active_children() == [] and left(r.segments) == []


def test_make_runner_follows_the_shape(tmp_path):
    from openlfr.live.multiproc import make_runner
    from openlfr.live.multiproc.runner import ProcessRunner
    from openlfr.live.runner import LiveRunner

    one = RunConfig(sources=["a.mp4"])
    assert type(make_runner(one)) is LiveRunner  # one camera: today's path, whatever the machine
    assert type(make_runner(RunConfig(sources=["a.mp4", "b.mp4"], shape="processes"))) is ProcessRunner
    assert type(make_runner(RunConfig(sources=["a.mp4", "b.mp4"], shape="threads"))) is LiveRunner


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cli_run_with_the_processes_shape(tmp_path, monkeypatch):
    """``openlfr run --shape processes`` on the demo scenario: the same single alert as the
    threaded run (tests/test_live_cli.py), from a camera process; here with a /dev/shm too
    small for the rings (as in a container), so the chips go through the pipe instead."""
    import json

    from typer.testing import CliRunner

    from openlfr.cli import app
    from openlfr.live.demo import SUBJECT_ID, build_demo

    demo = build_demo(tmp_path)
    made: list[str] = []
    create = SlotRing.create.__func__

    def recording(cls, slots, slot_bytes):
        ring = create(cls, slots, slot_bytes)
        made.append(ring.name)
        return ring

    monkeypatch.setattr(SlotRing, "create", classmethod(recording))
    real_statvfs = os.statvfs

    def tiny_shm(path):  # a container's /dev/shm: 64 KB free
        st = real_statvfs(path)
        return os.statvfs_result((st.f_bsize, 4096, st.f_blocks, 16, 16, st.f_files, st.f_ffree, st.f_favail, st.f_flag, st.f_namemax))

    monkeypatch.setattr(os, "statvfs", tiny_shm)
    res = CliRunner().invoke(app, ["run", "--source", str(demo.video), "--watchlist", str(demo.watchlist), "--json",
                                   "--shape", "processes"])
    assert res.exit_code == 0, res.output
    evs = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    alerts = [e for e in evs if e["event"] == "alert"]
    assert len(alerts) == 1 and alerts[0]["subject"] == SUBJECT_ID and alerts[0]["alert"] == 1
    s = evs[-1]
    assert s["event"] == "summary" and s["shape"] == "processes" and s["frames"] == 100 and s["alerts"] == 1
    assert s["service"]["oversize"] > 0 and s["service"]["faces"] == s["embedded"] > 0  # chips through the pipe
    assert mp.active_children() == [] and len(made) == 2 and left(made) == []
    bad = CliRunner().invoke(app, ["run", "--source", str(demo.video), "--watchlist", str(demo.watchlist), "--shape", "fibres"])
    assert bad.exit_code == 2 and "shape" in bad.output
    bad = CliRunner().invoke(app, ["run", "--source", str(demo.video), "--watchlist", str(demo.watchlist), "--detect-in", "gpu"])
    assert bad.exit_code == 2 and "detect_in" in bad.output


def test_service_answers_as_the_engine_does(astronaut):
    """The service protocol in one process (client and service on two ends of real pipes and
    rings): detections and descriptors equal the engine's own, extra detector arguments pass
    through, an image larger than a slot goes through the pipe, a failure reaches the caller."""
    import multiprocessing as mpc

    from openlfr.engine.pipeline import FaceEngine
    from openlfr.live.multiproc.client import RemoteDescriptor, RemoteDetector, ServiceClient, ServiceError
    from openlfr.live.multiproc.service import InferenceService

    engine = FaceEngine(detector="hog", upsample=1)
    svc = InferenceService(engine, embed_batch=8, embed_wait_ms=1.0).start()
    images, chips = SlotRing.create(1, 300 * 300 * 3), SlotRing.create(2, 8 * 150 * 150 * 3)
    req_r, req_w = mpc.Pipe(duplex=False)
    resp_r, resp_w = mpc.Pipe(duplex=False)
    svc.register("t.1", images, chips, req_r, resp_w)
    client = ServiceClient("t.1", req_w, resp_r, images.spec(), chips.spec())
    try:
        det = RemoteDetector(client, {"accepts_grey": False})
        small = np.ascontiguousarray(astronaut[:300, 100:400])
        assert det.detect(small) == engine.detector.detect(small) != []  # through the ring
        assert det.detect(astronaut) == engine.detector.detect(astronaut)  # 512x512: through the pipe
        assert svc.stats.oversize == 1
        faces = engine.align(astronaut, engine.detector.detect(astronaut))
        cs = np.stack([f.chip for f in faces] * 3)
        np.testing.assert_allclose(RemoteDescriptor(client).compute(cs), engine.descriptor.compute(cs), atol=1e-5)
        with pytest.raises(ServiceError, match="TypeError"):
            det.detect(small, "no such argument")
    finally:
        client.close()
        svc.stop()
    assert left([images.name, chips.name]) == []


def test_where_retina_runs():
    """RetinaFace in each camera process on a CPU-only machine (today's default), in the service
    on CUDA or when asked; the CNN always in the service, HOG always in the cameras."""
    from openlfr.live.multiproc.runner import detector_is_remote

    assert not detector_is_remote("retina", "auto", "onnxruntime-cpu")
    assert not detector_is_remote("retina", "auto", "torch-cpu-fp32")
    assert detector_is_remote("retina", "auto", "torch-cuda-fp16")
    assert detector_is_remote("retina", "service", "onnxruntime-cpu")
    assert not detector_is_remote("retina", "camera", "torch-cuda-fp32")
    assert detector_is_remote("cnn", "camera", "onnxruntime-cpu") and detector_is_remote("cnn", "auto", None)
    assert not detector_is_remote("hog", "service", "torch-cuda-fp32")
    with pytest.raises(ValueError):
        detector_is_remote("retina", "gpu", None)
    assert RunConfig(sources=["a.mp4"]).detect_in == "auto"
    with pytest.raises(ValueError):
        RunConfig(sources=["a.mp4"], detect_in="gpu")


class _CudaNamed:
    """The onnxruntime network under a CUDA runtime's name (what the runner decides from)."""

    runtime = "torch-cuda-fp32"

    def __init__(self, network):
        self.network = network

    def __call__(self, tensor):
        return self.network(tensor)


def test_service_detector_is_the_cameras_retina_batched():
    """The service's RetinaFace: the run's score threshold, upsample 0, the engine's network (one
    copy), batched across callers; padded to the GPU's buckets only on CUDA."""
    from openlfr.engine.batching import BatchingDetector
    from openlfr.engine.pipeline import FaceEngine
    from openlfr.engine.retina import GPU_BUCKETS, RetinaDetector
    from openlfr.live.multiproc.runner import detector_is_remote, service_detector

    engine = FaceEngine(detector="retina")
    cfg = RunConfig(sources=["a.mp4", "b.mp4"], detect_in="service", detection={"score_threshold": 0.6})
    det = service_detector(cfg, engine, 2)
    try:
        assert isinstance(det, BatchingDetector) and isinstance(det.detector, RetinaDetector)
        assert det.detector.network is engine.detector.network and det.threshold == 0.6 and det.upsample == 0
        assert det.buckets is None and not det.accepts_grey  # CPU: each image its own multiple of 32
    finally:
        det.close()
    engine.detector = RetinaDetector(network=_CudaNamed(engine.detector.network))
    assert detector_is_remote("retina", "auto", engine.detector.runtime)
    det = service_detector(cfg.model_copy(update={"detect_in": "auto"}), engine, 32)
    try:
        assert det.buckets == GPU_BUCKETS and det.max_batch == 32 and det.runtime == "torch-cuda-fp32"
    finally:
        det.close()
    cnn = RunConfig(sources=["a.mp4"], detection={"detector": "hog"})
    assert service_detector(cnn, engine, 2) is engine.detector  # other detectors: the engine's own


def test_service_batches_retina_requests_of_many_callers(astronaut):
    """Windows in one ``detect_batch`` request (packed in one slot, or through the pipe when
    larger), and single images from several threads at once: each answered as the detector
    answers it alone, the service's batching detector having joined them into fewer network calls."""
    import multiprocessing as mpc
    from concurrent.futures import ThreadPoolExecutor

    from openlfr.engine.batching import BatchingDetector
    from openlfr.engine.pipeline import FaceEngine
    from openlfr.engine.retina import RetinaDetector
    from openlfr.live.multiproc.client import RemoteDetector, ServiceClient, detector_attributes
    from openlfr.live.multiproc.service import InferenceService

    engine = FaceEngine(detector="retina")
    alone = RetinaDetector(network=engine.detector.network)
    batcher = BatchingDetector(alone, max_batch=8, wait_ms=300)
    svc = InferenceService(engine, embed_batch=8, embed_wait_ms=1.0, detect_threads=4, detector=batcher).start()
    images, chips = SlotRing.create(4, 400 * 400 * 3), SlotRing.create(1, 150 * 150 * 3)  # a slot per camera
    req_r, req_w = mpc.Pipe(duplex=False)
    resp_r, resp_w = mpc.Pipe(duplex=False)
    svc.register("t.1", images, chips, req_r, resp_w)
    client = ServiceClient("t.1", req_w, resp_r, images.spec(), chips.spec())
    try:
        det = RemoteDetector(client, detector_attributes(batcher))
        assert det.remote and det.accepts_grey is False and det.upsample == 0
        windows = [np.ascontiguousarray(astronaut[y:y + 160, x:x + 150]) for y, x in ((40, 110), (60, 130), (0, 0))]
        windows.append(np.ascontiguousarray(astronaut[:200, 100:300]))  # another size: another bucket
        for thr in (None, 0.3):
            got = det.detect_batch(windows) if thr is None else det.detect_batch(windows, thr)
            assert got == [alone.detect(w, thr) for w in windows]
        assert sum(map(len, got)) >= 2 and svc.stats.oversize == 0
        assert det.detect_batch([astronaut, windows[0]]) == [alone.detect(astronaut), alone.detect(windows[0])]  # through the pipe
        assert svc.stats.oversize == 1 and det.detect_batch([]) == []
        before = batcher.batches
        with ThreadPoolExecutor(4) as pool:  # four cameras at once
            many = list(pool.map(det.detect, [windows[0], windows[1], windows[0], windows[1]]))
        assert many == [alone.detect(w) for w in (windows[0], windows[1], windows[0], windows[1])]
        assert batcher.batches - before < 4 and batcher.largest >= 2  # some shared a network call
        js = svc.to_json()
        assert js["detect_batches"] == batcher.batches and svc.stats.detect_images == 4 * 2 + 2 + 4
        assert js["detect_cpu_s"] >= round(batcher.cpu_s, 3) > 0
    finally:
        client.close()
        svc.stop()
        batcher.close()
    assert left([images.name, chips.name]) == []
