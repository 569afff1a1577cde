"""The run loop end to end on the demo scenario (no downloads, no ../shared): exactly one alert,
several cameras with a shared embedder, newest-frame-wins with counted drops, clean stop,
the annotated video (alert sharp, everyone else unfindable)."""

from __future__ import annotations

import shutil
import threading
import time

import cv2
import numpy as np
import pytest

from openlfr.engine.detection import make_detector
from openlfr.live.config import RunConfig
from openlfr.live.demo import SUBJECT_ID, build_demo
from openlfr.live.runner import CameraWorker, LiveRunner, RunError, SourceReader


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo"))


def run(cfg, **kw):
    events = []
    r = LiveRunner(cfg, on_event=events.append, **kw)
    r.prepare()
    return r, r.run(), events


def test_demo_scenario_exactly_one_alert(demo):
    r, s, events = run(RunConfig(sources=[str(demo.video)], watchlist=demo.watchlist))
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "summary"
    assert events[0]["threshold"] == s["threshold"] and "1-subject watchlist" in events[0]["threshold_reason"]
    alerts = [e for e in events if e["event"] == "alert"]
    assert [a["subject"] for a in alerts] == [SUBJECT_ID]
    a = alerts[0]
    assert set(a) >= {"event", "camera", "track", "subject", "distance", "frame", "time"}
    assert a["distance"] < s["threshold"] and a["camera"] == "walk_past.mp4"
    # how it was decided (the calibrated scoring model): the face's threshold, the score below its band's Z threshold
    assert a["distance"] < a["threshold"] and a["score"] < a["score_threshold"] and a["band"] in r.scoring_model.band_names()
    assert a["second_model"] == events[0]["second_model"]  # the reference and the probe both have SFace's feature where it runs
    assert s["frames"] == 100 and s["dropped_frames"] == 0 and s["alerts"] == 1
    assert s["faces_seen"] == 2  # Collins and Hopper, each counted once
    assert s["fps"] > 0 and not s["interrupted"]
    # Hopper was searched and is far from Collins: no near miss
    updates = [e for e in events if e["event"] == "alert_update"]
    assert all(u["subject"] == SUBJECT_ID and u["alert"] == a["alert"] for u in updates)


def test_two_cameras_share_one_embedder(demo, tmp_path):
    second = tmp_path / "cam2.mp4"
    shutil.copy(demo.video, second)
    r, s, events = run(RunConfig(sources=[str(demo.video), str(second)], watchlist=demo.watchlist))
    cams = {c["name"]: c for c in s["cameras"]}
    assert set(cams) == {"walk_past.mp4", "cam2.mp4"}
    assert all(c["frames"] == 100 and c["alerts"] == 1 and c["faces_seen"] == 2 for c in cams.values())
    alerts = [e for e in events if e["event"] == "alert"]
    assert sorted(a["camera"] for a in alerts) == ["cam2.mp4", "walk_past.mp4"]  # cool-down is per camera
    assert len({a["track"] for a in alerts}) == 2  # track ids are unique across cameras
    assert s["embedded"] == sum(c["embedded"] for c in cams.values())
    assert s["embed_batches"] <= s["embedded"]


def test_same_source_twice_is_refused(demo):
    with pytest.raises(Exception, match="same source"):
        RunConfig(sources=[str(demo.video), str(demo.video)], watchlist=demo.watchlist)


def test_realtime_newest_frame_wins_and_drops_are_counted(demo, monkeypatch):
    from openlfr.live import runner as live_runner

    real = live_runner.CameraWorker.process

    def slow(self, frame):
        time.sleep(0.08)  # a worker 2x slower than the 25 frames/s camera
        real(self, frame)

    monkeypatch.setattr(live_runner.CameraWorker, "process", slow)
    r, s, _ = run(RunConfig(sources=[str(demo.video)], watchlist=demo.watchlist, realtime=True, queue_size=2))
    cam = s["cameras"][0]
    assert cam["read"] == 100
    assert s["dropped_frames"] > 20 and cam["frames"] + s["dropped_frames"] == 100


def test_stop_is_clean(demo):
    """Ctrl-C / SIGTERM call stop(): readers stop, workers finish their frame, tracks end, a summary comes.

    stop() is called from the run itself once the 10th frame is done (not after a delay), so the
    test holds on a machine of any speed or load."""
    events = []
    r = LiveRunner(RunConfig(sources=[str(demo.video)], watchlist=demo.watchlist, realtime=True),
                   on_event=events.append)
    r.prepare()
    frame_done = r.frame_done

    def stop_after_ten(worker, frame):
        frame_done(worker, frame)
        if worker.stats.frames == 10:
            r.stop()

    r.frame_done = stop_after_ten
    s = r.run()
    assert s["interrupted"] and s["frames"] == 10  # the worker finished its frame and took no other
    assert events[-1]["event"] == "summary"
    alive = [t.name for t in threading.enumerate() if t is not threading.current_thread() and isinstance(t, (SourceReader, CameraWorker))]
    assert alive == []


@pytest.mark.parametrize("sig, status", [("SIGTERM", 0), ("SIGINT", 130)])
def test_signal_on_the_command_line(demo, tmp_path, sig, status):
    """SIGTERM stops a run cleanly (status 0); Ctrl-C (SIGINT) too, with status 130; the summary comes first."""
    import json
    import signal
    import subprocess
    import sys

    p = subprocess.Popen(
        [sys.executable, "-c", "from openlfr.cli import main; main()", "run", "--source", str(demo.video), "--watchlist", str(demo.watchlist),
         "--json", "--realtime"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = p.stdout.readline()  # the start event: the run is under way
        assert json.loads(first)["event"] == "start"
        time.sleep(0.5)
        p.send_signal(getattr(signal, sig))
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == status, err
    last = json.loads(out.strip().splitlines()[-1])
    assert last["event"] == "summary" and last["interrupted"] is True and last["frames"] < 100


def test_annotated_video_shows_only_the_alert(demo, tmp_path):
    out = tmp_path / "annotated.mp4"
    r, s, events = run(RunConfig(sources=[str(demo.video)], watchlist=demo.watchlist, annotate=out))
    assert s["alerts"] == 1
    cap = cv2.VideoCapture(str(out))
    orig = cv2.VideoCapture(str(demo.video))
    hog = make_detector("hog", upsample=1)
    frames = found_orig = found_ann = 0
    red = 0
    shape = None
    while True:
        ok, f = cap.read()
        ok2, g = orig.read()
        if not (ok and ok2):
            break
        shape = f.shape
        if frames in (40, 50, 60):  # both people in view
            found_orig += len(hog.detect(cv2.cvtColor(g, cv2.COLOR_BGR2GRAY)))
            found_ann += len(hog.detect(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)))
            red += int(((f[:, :, 2] > 200) & (f[:, :, 1] < 80) & (f[:, :, 0] < 80)).sum() > 50)  # the alert box
        frames += 1
    assert frames == 100 and shape == (540, 960, 3)
    assert found_orig >= 5  # Collins and Hopper in the original
    assert 1 <= found_ann <= 3 and found_orig - found_ann >= 2  # Hopper is not findable any more
    assert red == 3


def test_bad_inputs_raise_run_error(demo, tmp_path):
    with pytest.raises(RunError, match="no such file"):
        LiveRunner(RunConfig(sources=[str(tmp_path / "nope.mp4")], watchlist=demo.watchlist)).prepare()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunError, match="watchlist"):
        LiveRunner(RunConfig(sources=[str(demo.video)], watchlist=empty)).prepare()
    noface = tmp_path / "noface"
    noface.mkdir()
    cv2.imwrite(str(noface / "someone.png"), np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8))
    with pytest.raises(RunError, match="no subject has an accepted image"):
        LiveRunner(RunConfig(sources=[str(demo.video)], watchlist=noface)).prepare()


def test_a_dead_stream_does_not_stop_the_other_cameras(demo):
    """Two cameras: a file, and an MJPEG stream that dies: the stream is reported and retried
    with back-off while the file camera runs to its end."""
    from test_live_sources import MjpegServer

    srv = MjpegServer(frames_per_connection=10_000, fps=25).start()
    events = []
    r = LiveRunner(RunConfig(sources=[str(demo.video), srv.url], watchlist=demo.watchlist,
                             stall_timeout_s=1.0, reconnect_max_s=1.0), on_event=events.append)
    try:
        r.prepare()
        t = threading.Thread(target=r.run)
        t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(e["event"] == "source" for e in events):
            time.sleep(0.05)
        srv.stop()  # the stream camera dies
        while time.monotonic() < deadline and not (
            any(e.get("state") == "reconnecting" for e in events)
            and any(e.get("state") == "ended" and e["camera"] == "walk_past.mp4" for e in events)
        ):
            time.sleep(0.05)
        r.stop()
        t.join(15)
    finally:
        srv.stop()
    assert not t.is_alive()
    s = events[-1]
    assert s["event"] == "summary"
    cams = {c["name"]: c for c in s["cameras"]}
    assert cams["walk_past.mp4"]["frames"] == 100 and cams["walk_past.mp4"]["alerts"] == 1
    stream = [c for name, c in cams.items() if name != "walk_past.mp4"][0]
    assert stream["frames"] > 0 and stream["state"] == "reconnecting"  # down, and being reopened
    states = [e["state"] for e in events if e["event"] == "source" and e["camera"] != "walk_past.mp4"]
    assert "down" in states and "reconnecting" in states


def test_camera_worker_runs_on_its_parts_alone(demo):
    """A camera worker is given its collaborators, not the runner: assembled by hand from the
    engine, a watchlist, a policy and callbacks, it raises the demo's one alert and tells of
    it, of each frame and of nothing else through the callbacks."""
    from openlfr.engine.pipeline import FaceEngine
    from openlfr.live.alerts import AlertPolicy
    from openlfr.live.align import Aligner
    from openlfr.live.bestshot import BestShots
    from openlfr.live.embedder import SharedEmbedder, engine_compute
    from openlfr.live.runner import CameraStats, WorkerParts
    from openlfr.live.scheduler import DetectionScheduler
    from openlfr.live.sources import FrameQueue, open_source
    from openlfr.live.tracker import Tracker
    from openlfr.watchlist.enrol import load_watchlist
    from openlfr.watchlist.index import make_index

    engine = FaceEngine(detector="hog", upsample=1)
    wl, _ = load_watchlist(demo.watchlist, engine)
    index = make_index("exact")
    index.add(wl.templates, wl.template_subject)
    policy = AlertPolicy(0.6, subjects=wl.subjects)
    alerts, frames, other = [], [], []
    embedder = SharedEmbedder(engine_compute(engine)).start()
    parts = WorkerParts(
        aligner=Aligner(engine), band_of=lambda face: 0, new_shots=BestShots, embedder=embedder, index=index,
        n_subjects=len(wl), scoring=None, policy=policy, reid_distance=0.5, on_alert=alerts.append,
        on_event=other.append, on_frame=lambda w, f: frames.append(f.index), stopping=lambda: False,
    )
    src = open_source(str(demo.video))
    src.open()
    queue = FrameQueue(4, drop=False)
    stop = threading.Event()
    reader = SourceReader(src, queue, stop)
    worker = CameraWorker(src, queue, CameraStats(src.name, src.kind), DetectionScheduler(
        make_detector("hog", upsample=0), scale=1.0, fps=src.fps), Tracker(src.name), parts)
    assert not any(isinstance(v, LiveRunner) for v in vars(worker).values())
    try:
        reader.start()
        worker.start()
        worker.join(timeout=120)
    finally:
        stop.set()
        reader.join(timeout=5)
        embedder.stop()
        src.close()
    assert not worker.is_alive() and worker.error is None and other == []
    assert frames == list(range(100)) and worker.stats.frames == 100
    assert [(e.kind, e.alert.subject) for e in alerts][:1] == [("alert", SUBJECT_ID)]
    assert {e.alert.subject for e in alerts} == {SUBJECT_ID} and policy.alerts[0].distance < 0.6
    assert worker.stats.faces_seen == 2 and worker.tracker.tracks == []  # every track ended, its data dropped
