"""A camera process: the unchanged live run (``LiveRunner``) over one camera or a group.

It decodes, schedules detection, tracks, picks best shots, aligns, searches the watchlist and
decides alerts exactly as the threaded run does (same code: ``CameraWorker``), under its own
GIL; only the networks are remote: the engine's detector and descriptor are the service's
(``client.RemoteDetector`` / ``RemoteDescriptor``). dlib's HOG, a CPU detector, stays in the
process (that is what spreads it over the cores). Everything the parent must know goes back
on one events queue: source events, alerts (with chip and template, for the parent's store),
camera stats twice a second, and the final summary with the process's CPU accounting (one
pipe per process, like the requests).

SIGINT is ignored (the parent stops the run with a ``"stop"`` control message on the answer
pipe, or by going away); SIGTERM stops it cleanly.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass

from ..config import RunConfig


@dataclass
class CameraSpec:
    """Everything a camera process starts from (pickled once, at spawn)."""

    key: str  # "<group>.<generation>": the service's name for this process
    group: int
    cfg: RunConfig  # the run's config with this group's sources (NAME=SPEC)
    names: list[str]  # camera names, in the order of cfg.sources
    watchlist: object
    threshold: float
    images: tuple  # SlotRing specs
    chips: tuple
    detector_remote: bool
    detector_attributes: dict
    engine_attributes: dict | None = None  # the parent engine's plain options (flip, jitter, landmarks...)
    scoring_target: float | None = None  # the parent decides with the scoring model at this target FPIR
    reference_band: object = None  # (subjects,) worst band of each subject's references (overrides)
    log_level: int = logging.ERROR


class TimedSource:
    """A FrameSource whose ``read`` (decode and colour conversion) is timed in thread CPU."""

    def __init__(self, inner):
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "decode_cpu_s", 0.0)

    def read(self):
        c0 = time.thread_time()
        try:
            return self.inner.read()
        finally:
            object.__setattr__(self, "decode_cpu_s", self.decode_cpu_s + time.thread_time() - c0)

    def __getattr__(self, k):
        return getattr(self.inner, k)

    def __setattr__(self, k, v):
        setattr(self.inner, k, v)


class DetectorClock:
    """Thread CPU spent inside local (in-process) detectors, for the host budget."""

    cpu_s = 0.0
    lock = threading.Lock()

    @classmethod
    def wrap_factory(cls, make):
        """``make_detector`` whose detectors time their ``detect`` / ``detect_batch`` calls."""

        def timed_make(*a, **kw):
            det = make(*a, **kw)
            for name in ("detect", "detect_batch"):
                fn = getattr(det, name, None)
                if fn is None:
                    continue

                def timed(*x, _fn=fn, **y):
                    c0 = time.thread_time()
                    try:
                        return _fn(*x, **y)
                    finally:
                        with cls.lock:
                            cls.cpu_s += time.thread_time() - c0

                setattr(det, name, timed)
            return det

        return timed_make

    @classmethod
    def install(cls) -> None:
        """Time the detectors a camera worker makes itself (HOG, RetinaFace: through
        ``engine.detection.make_detector``). Accounting only: the detectors are unchanged."""
        from ...engine import detection

        detection.make_detector = cls.wrap_factory(detection.make_detector)


def camera_main(spec: CameraSpec, requests, responses, events) -> None:
    """Entry point of a camera process (``multiprocessing`` spawn target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=spec.log_level, format=f"%(asctime)s %(levelname)s camera-process {spec.group}: %(message)s")
    from ...engine.pipeline import FaceEngine
    from ..alerts import AlertEvent
    from ..runner import LiveRunner, RunError
    from .client import RemoteDescriptor, RemoteDetector, ServiceClient

    key = spec.key
    send_lock = threading.Lock()

    def send(*m) -> None:  # events pipe: several threads write to it
        try:
            with send_lock:
                events.send((m[0], key, *m[1:]))
        except (OSError, ValueError):  # the parent is gone: the watcher stops the run
            pass

    DetectorClock.install()  # accounting only: CPU of the detectors that run in this process
    stop = threading.Event()
    client = ServiceClient(key, requests, responses, spec.images, spec.chips,
                           on_control=lambda m: stop.set() if m == "stop" else None)
    engine = FaceEngine(detector="hog", upsample=spec.cfg.detection.upsample, descriptor=RemoteDescriptor(client))
    for k, v in (spec.engine_attributes or {}).items():  # align (and embed) as the parent's engine does
        setattr(engine, k, v)
    engine.detector_name = spec.cfg.detection.detector  # (the second model follows RetinaFace's landmarks)
    if spec.detector_remote:
        engine.detector = RemoteDetector(client, spec.detector_attributes)

    class CameraRunner(LiveRunner):
        def alert_event(self, ev: AlertEvent) -> None:
            with self._lock:
                for st in self.stats:
                    if st.name == ev.alert.camera and ev.kind == "alert":
                        st.alerts += 1
            send("alert", ev.kind, ev.alert, ev.track)

        def _install_signals(self):
            if threading.current_thread() is not threading.main_thread():
                return None
            prev = signal.signal(signal.SIGTERM, lambda *_: self.stop())
            return {signal.SIGTERM: prev}

    def on_event(ev: dict) -> None:
        kind = ev.get("event")
        if kind == "start":
            return
        if kind == "summary":
            return  # sent below, with the process accounting
        send("event", ev)

    scoring = None if spec.scoring_target is None else {"kind": "openlfr scoring model", "target_fpir": spec.scoring_target}
    runner = CameraRunner(spec.cfg, on_event=on_event, engine=engine, watchlist=spec.watchlist,
                          threshold=None if scoring else spec.threshold, scoring_evidence=scoring,
                          reference_band=spec.reference_band)
    try:
        runner.prepare()
    except RunError as e:
        send("failed", str(e))
        client.close()
        return
    for src, name in zip(runner.sources, spec.names):
        src.name = name
    runner.sources = [TimedSource(s) for s in runner.sources]
    send("ready", os.getpid())

    done = threading.Event()

    def watch() -> None:  # the parent's stop (or death), and stats twice a second
        while not done.is_set():
            if stop.wait(0.5):
                runner.stop()
                return
            if runner.stats:
                send("stats", [st.to_json() for st in list(runner.stats)])

    threading.Thread(target=watch, name="camera-process-watch", daemon=True).start()
    c0 = os.times()
    try:
        summary = runner.run()
    finally:
        done.set()
    c1 = os.times()
    summary["process"] = {
        "pid": os.getpid(),
        "cameras": list(spec.names),
        "cpu_s": round((c1.user - c0.user) + (c1.system - c0.system), 3),
        "decode_cpu_s": round(sum(s.decode_cpu_s for s in runner.sources), 3),
        "local_detector_cpu_s": round(DetectorClock.cpu_s, 3),
        "suppressed": runner.policy.suppressed,
    }
    send("summary", summary)
    client.close()


def group_config(cfg: RunConfig, specs: list[str], first: bool) -> RunConfig:
    """The run's config for one group of sources (the annotated video stays with camera 0)."""
    return cfg.model_copy(update={"sources": specs, "annotate": cfg.annotate if first else None})
