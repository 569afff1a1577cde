"""The parent of a many-camera run: camera processes, one inference service, one event stream.

``ProcessRunner`` is a ``LiveRunner`` (same constructor, ``prepare``, events, alerts, sink and
summary) whose ``run`` spreads the cameras over camera processes (``camera_process``; one
camera or a group each) and serves their networks from one ``InferenceService`` in this
process. It:

- decides where the detector runs (``detector_is_remote``): RetinaFace in each camera process
  on a CPU-only machine, in the service (one network, the cameras' images batched:
  ``service_detector``) when the engine's runtime is CUDA or ``detect_in="service"``;
- makes each process's shared-memory rings and pipes (requests, answers, events), so nothing
  a process owns can leak when it dies: the parent unlinks every segment at the end;
- turns the processes' alerts into its own (one numbering for the run), records them in the
  sink before anyone is told, and emits the same events as the threaded run;
- restarts a camera process that dies (up to ``max_restarts`` per group; its cameras are
  reported ``error`` and then reopened; the other cameras go on untouched);
- stops them all on ``stop()`` / Ctrl-C / SIGTERM, waits for their summaries, and sums them.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait

import numpy as np

from ..alerts import AlertEvent
from ..runner import CameraStats, LiveRunner
from ..scheduler import PROFILES
from .camera_process import CameraSpec, camera_main, group_config
from .client import detector_attributes
from .service import InferenceService
from .shape import process_count
from .shm import SlotRing

log = logging.getLogger(__name__)

CHIP_BYTES = 150 * 150 * 3
CHIPS_PER_CALL = 32  # most chips a camera process sends in one request (its own embedder's batch)
SUMMED = ("frames", "read", "dropped", "detections", "scans", "window_runs", "embedded", "embedded_second", "aligned", "merged", "too_poor",
          "faces_seen", "reconnects", "busy_s", "cpu_s", "scan_cpu_s", "window_cpu_s", "scanned_mpx")


@dataclass
class _Group:
    index: int
    cams: list[int]  # indices into runner.sources
    generation: int = 0
    key: str = ""
    proc: object = None
    events: object = None  # parent's end of the events pipe
    done: bool = False
    restarts: int = 0
    pid: int | None = None
    ready_at: float | None = None  # monotonic time of its first generation's "ready"
    current: dict = field(default_factory=dict)  # camera name -> stats of this generation
    base: dict = field(default_factory=dict)  # camera name -> stats summed over dead generations
    process: dict | None = None  # the process accounting of its summary


class ProcessRunner(LiveRunner):
    shape = "processes"

    def __init__(self, cfg, on_event=None, engine=None, watchlist=None, enrol_engine=None, sink=None,
                 threshold: float | None = None, processes: int | None = None, max_restarts: int = 3,
                 start_method: str = "spawn", scoring_evidence: dict | None = None, reference_band=None):
        super().__init__(cfg, on_event=on_event, engine=engine, watchlist=watchlist, enrol_engine=enrol_engine,
                         sink=sink, threshold=threshold, scoring_evidence=scoring_evidence, reference_band=reference_band)
        self.n_processes = processes if processes is not None else getattr(cfg, "camera_processes", 0)
        self.max_restarts = max_restarts
        self.ctx = mp.get_context(start_method)
        self.groups: list[_Group] = []
        self.service: InferenceService | None = None
        self.remote_detector = False  # whether the camera processes call the service's detector (run decides)
        self.service_detector = None  # the detector answering them (a BatchingDetector for RetinaFace)
        self._alert_ids = itertools.count(1)
        self._alerts: dict[tuple[str, int], object] = {}
        self._by_name: dict[str, CameraStats] = {}
        self.segments: list[str] = []  # names of every shared-memory segment made (all unlinked at the end)
        self.shm_fallback = False  # True: /dev/shm too small, data through the pipes

    # ------------------------------------------------------------------ setup
    def prepare(self) -> None:
        super().prepare()  # sources checked, engine, watchlist, threshold, policy
        self.close_sources()  # each camera process opens its own

    def _ring_sizes(self, n_cams: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(slots, bytes) of a camera process's image ring and chip ring.

        Images: one slot per camera (a worker waits for its detection), as large as a scan
        (``scan_pixels`` after scaling, RGB); none when the camera worker makes its own detector. Chips:
        two slots of up to ``CHIPS_PER_CALL`` chips (the process's embedder batches up to that;
        the service batches across processes). Larger images still work, through the pipe
        (counted as ``oversize``), and so does everything when /dev/shm is too small for the
        rings (a container's default is 64 MB): then they shrink to a token size."""
        c = self.cfg
        remote = self.remote_detector
        scan = c.detection.scan_pixels or PROFILES[c.detection.detector].scan_pixels
        images = (n_cams, int(scan * 1.1) * 3 + 4096) if remote else (1, 4096)
        chips = (2, min(c.embed_batch, CHIPS_PER_CALL) * CHIP_BYTES)
        return images, chips

    def _plan_shm(self, groups: list[_Group]) -> None:
        """Shrink the rings to token size (pipes carry the data) if /dev/shm cannot hold them."""
        need = 0
        for g in groups:
            (a, b), (x, y) = self._ring_sizes(len(g.cams))
            need += a * b + x * y
        try:
            st = os.statvfs("/dev/shm")
            free = st.f_bavail * st.f_frsize
        except OSError:  # no /dev/shm (not Linux): let SharedMemory decide
            free = need * 2
        self.shm_fallback = need > 0.8 * free
        if self.shm_fallback:
            log.warning("/dev/shm has %.0f MB free, the camera processes' rings need %.0f MB: frames and chips "
                        "go through the pipes instead (slower; enlarge /dev/shm, e.g. docker --shm-size)",
                        free / 1e6, need / 1e6)

    def _spawn(self, g: _Group) -> None:
        c = self.cfg
        g.generation += 1
        g.key = f"{g.index}.{g.generation}"
        g.done, g.current, g.pid, g.process = False, {}, None, None
        (ni, bi), (nc, bc) = self._ring_sizes(len(g.cams))
        if self.shm_fallback:
            bi = bc = 4096
        images = SlotRing.create(ni, bi)
        chips = SlotRing.create(nc, bc)
        self.segments += [images.name, chips.name]
        req_r, req_w = self.ctx.Pipe(duplex=False)
        resp_r, resp_w = self.ctx.Pipe(duplex=False)
        ev_r, ev_w = self.ctx.Pipe(duplex=False)
        self.service.register(g.key, images, chips, req_r, resp_w)
        srcs = [self.sources[i] for i in g.cams]
        specs = [f"{s.name}={s.spec}" if _plain(s.name) else s.spec for s in srcs]
        det = self.service_detector if self.remote_detector else self.engine.detector
        cfg = group_config(c, specs, first=0 in g.cams).model_copy(update={"embed_batch": min(c.embed_batch, CHIPS_PER_CALL)})
        spec = CameraSpec(
            key=g.key, group=g.index, cfg=cfg, names=[s.name for s in srcs],
            watchlist=self.watchlist, threshold=self.threshold.threshold, images=images.spec(), chips=chips.spec(),
            # the scoring model decides in the process as here: per subject and band, not one distance
            scoring_target=None if self.scoring is None else self.scoring.target,
            reference_band=self.reference_band,
            detector_remote=self.remote_detector, detector_attributes=detector_attributes(det),
            engine_attributes=engine_attributes(self.engine),
            log_level=logging.getLogger().getEffectiveLevel(),
        )
        p = self.ctx.Process(target=camera_main, args=(spec, req_w, resp_r, ev_w),
                             name=f"openlfr-camera-{g.index}", daemon=True)
        p.start()
        for conn in (req_w, resp_r, ev_w):  # the child's ends: closed here, so its death is seen as EOF
            conn.close()
        g.proc, g.events = p, ev_r

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        c = self.cfg
        prev = self._install_signals()
        self.emit(self.start_event())
        n = len(self.sources)
        P = process_count(n, self.n_processes or 0)
        self.remote_detector = detector_is_remote(c.detection.detector, c.detect_in,
                                                  getattr(self.engine.detector, "runtime", None))
        if self.remote_detector:
            self.service_detector = service_detector(c, self.engine, n)
        self.service = InferenceService(self.engine, c.embed_batch, c.embed_wait_ms,
                                        detect_threads=max(2, min(64, n)), detector=self.service_detector).start()
        self.embedder = self.service.embedder
        for src in self.sources:
            st = CameraStats(src.name, src.kind, total=src.frame_count, fps_source=src.fps, state="starting")
            self.stats.append(st)
            self._by_name[st.name] = st
        self.groups = [_Group(i, list(range(i, n, P))) for i in range(P)]
        self._plan_shm(self.groups)
        self.started = time.monotonic()
        cpu0 = os.times()
        stop_deadline = None
        try:
            for g in self.groups:
                self._spawn(g)
            last_maintain = time.monotonic()
            while not all(g.done for g in self.groups):
                self._pump(0.1)
                self._check_processes()
                if self.stop_event.is_set():
                    if stop_deadline is None:
                        self._stop_processes()
                        stop_deadline = time.monotonic() + 20
                    elif time.monotonic() > stop_deadline:
                        log.warning("camera processes did not stop in time: terminating them")
                        break
                last_maintain = self._keep_sink(last_maintain)
        finally:
            self.stop_event.set()
            self._stop_processes()
            self._shutdown()
            self._close_sink()
            self._restore_signals(prev)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        cpu1 = os.times()
        parent_cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        procs = [g.process for g in self.groups if g.process]
        self.policy.suppressed = sum(p.get("suppressed", 0) for p in procs)
        self.summary = self._summary(elapsed, parent_cpu + sum(p["cpu_s"] for p in procs))
        ready = [g.ready_at for g in self.groups if g.ready_at is not None]
        startup = max(ready) - self.started if ready else 0.0  # spawning and preparing the processes
        self.summary.update(shape="processes", detect_in="service" if self.remote_detector else "camera",
                            parent_cpu_s=round(parent_cpu, 3), processes=procs,
                            service=self.service.to_json(), restarts=sum(g.restarts for g in self.groups),
                            startup_s=round(startup, 3),
                            fps_after_startup=round(self.summary["frames"] / max(elapsed - startup, 1e-9), 2))
        self.emit(self.summary)
        return self.summary

    def _stop_processes(self) -> None:
        for g in self.groups:
            if not g.done:
                self.service.control(g.key, "stop")

    def _shutdown(self) -> None:
        end = time.monotonic() + 15
        while time.monotonic() < end and any(g.proc is not None and g.proc.is_alive() for g in self.groups):
            self._pump(0.1)
        for g in self.groups:
            if g.proc is not None and g.proc.is_alive():
                g.proc.terminate()
                g.proc.join(3)
                if g.proc.is_alive():
                    g.proc.kill()
            if g.proc is not None:
                g.proc.join(3)
        self._pump(0)  # the last summaries
        for g in self.groups:
            if g.events is not None:
                g.events.close()
                g.events = None
            if g.proc is not None:
                g.proc.close()
                g.proc = None
        if self.service is not None:
            self.service.stop()  # closes every pipe and unlinks every ring
        if self.service_detector is not None and self.service_detector is not self.engine.detector:
            close = getattr(self.service_detector, "close", None)
            if close is not None:
                close()  # its batching thread

    # ------------------------------------------------------------------ events from the processes
    def _pump(self, timeout: float) -> None:
        conns = {g.events: g for g in self.groups if g.events is not None}
        if not conns:
            time.sleep(timeout)
            return
        ready = wait(list(conns), timeout=timeout)
        while ready:
            for conn in ready:
                g = conns[conn]
                try:
                    msg = conn.recv()
                except (EOFError, OSError, ValueError, TypeError):  # the process ended (or died mid-message)
                    conn.close()
                    if g.events is conn:
                        g.events = None
                    conns.pop(conn, None)
                    continue
                self._handle(g, msg)
            ready = wait(list(conns), timeout=0) if conns else []

    def _handle(self, g: _Group, msg: tuple) -> None:
        kind, key = msg[0], msg[1]
        current = key == g.key
        if kind == "event":
            ev = msg[2]
            if ev.get("event") == "source":
                self._source_state(ev["camera"], ev["state"])
            self.emit(ev)
        elif kind == "alert":
            self._alert(key, *msg[2:])
        elif kind == "stats" and current:
            g.current = {d["name"]: d for d in msg[2]}
            self._merge(g)
        elif kind == "summary" and current:
            s = msg[2]
            g.current = {d["name"]: d for d in s["cameras"]}
            g.process = s["process"]
            g.done = True
            self._merge(g)
        elif kind == "ready" and current:
            g.pid = msg[2]
            if g.ready_at is None:
                g.ready_at = time.monotonic()
            for i in g.cams:
                st = self.stats[i]
                if st.state == "starting":
                    st.state = "live"
        elif kind == "failed" and current:
            g.done = True
            for i in g.cams:
                self.stats[i].state = "error"
                self.emit({"event": "source", "camera": self.stats[i].name, "state": "error", "message": msg[2]})

    def _source_state(self, camera: str, state: str) -> None:
        st = self._by_name.get(camera)
        if st is None:
            return
        st.state = {"down": "down", "reconnecting": "down", "reconnected": "live", "ended": "ended",
                    "error": "error"}.get(state, st.state)

    def _merge(self, g: _Group) -> None:
        for i in g.cams:
            st = self.stats[i]
            cur, base = g.current.get(st.name, {}), g.base.get(st.name, {})
            for f in SUMMED:
                setattr(st, f, type(getattr(st, f))(base.get(f, 0) + cur.get(f, 0)))
            if cur:
                st.last_time = cur.get("last_time", st.last_time)
                if cur.get("state") not in (None, "starting"):
                    st.state = cur["state"]

    def _alert(self, key: str, kind: str, alert, track: int) -> None:
        """A camera process's alert, numbered for the whole run, stored and emitted here."""
        k = (key, alert.id)
        mine = self._alerts.get(k)
        if kind == "alert" or mine is None:
            mine = dataclasses.replace(alert, id=next(self._alert_ids), tracks=list(alert.tracks))
            self._alerts[k] = mine
            self.policy.alerts.append(mine)
            kind = "alert"
        else:
            for f in ("distance", "threshold", "score", "score_threshold", "band", "second_model", "frame", "time", "wall",
                      "updates", "chip", "template"):
                setattr(mine, f, getattr(alert, f))
            mine.tracks = list(alert.tracks)
            self.policy.updates += 1
        self.alert_event(AlertEvent(kind, mine, track))

    # ------------------------------------------------------------------ failures
    def _check_processes(self) -> None:
        for g in self.groups:
            if g.done or g.proc is None or g.proc.exitcode is None:
                continue
            self._pump(0.05)  # a summary sent just before exiting
            if g.done:
                continue
            code = g.proc.exitcode
            self._died(g, code)

    def _died(self, g: _Group, code: int) -> None:
        names = [self.stats[i].name for i in g.cams]
        for name in names:  # what the dead generation did still counts
            prev, cur = g.base.get(name, {}), g.current.get(name, {})
            g.base[name] = {f: prev.get(f, 0) + cur.get(f, 0) for f in SUMMED}
        g.current = {}
        self.service.unregister(g.key)
        if g.events is not None:
            g.events.close()
            g.events = None
        g.proc.join(1)
        g.proc.close()
        g.proc = None
        why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        restart = not self.stop_event.is_set() and g.restarts < self.max_restarts
        msg = (f"camera process died ({why}); restarting ({g.restarts + 1}/{self.max_restarts})" if restart
               else f"camera process died ({why}); not restarted")
        log.error("cameras %s: %s", ", ".join(names), msg)
        for i in g.cams:
            self.stats[i].state = "error"
            self.emit({"event": "source", "camera": self.stats[i].name, "state": "error", "message": msg})
        if restart:
            g.restarts += 1
            self._spawn(g)
        else:
            g.done = True


LOCAL_DETECTORS = ("hog", "retina")  # CameraWorker can make these itself, one per camera
DETECT_BATCH = 32  # most images in one call of the service's RetinaFace
DETECT_WAIT_MS = 2.0  # ... which waits this long for the other cameras' images


def detector_is_remote(name: str, detect_in: str = "auto", runtime: str | None = None) -> bool:
    """Whether camera processes call the service's detector rather than make their own.

    The CNN: always (one network for all). HOG: never (a CPU detector: each process's on its
    own core). RetinaFace: ``detect_in`` says (``service`` / ``camera``); ``auto``: in the service
    when the engine's detector runs on CUDA (``runtime`` ``torch-cuda-*``: one network on the GPU,
    the cameras' images batched), else in each camera (onnxruntime on the CPU, one thread per
    camera, side by side: a laptop's shape)."""
    if detect_in not in ("auto", "camera", "service"):
        raise ValueError(f"unknown detect_in {detect_in!r} (auto, camera, service)")
    if name not in LOCAL_DETECTORS:
        return True
    if name == "hog":
        return False
    if detect_in != "auto":
        return detect_in == "service"
    return str(runtime or "").startswith("torch-cuda")


def service_detector(cfg, engine, n_cameras: int):
    """The detector of the inference service for the camera processes' requests.

    RetinaFace as a camera worker makes it (upsample 0, the run's score threshold; the windows'
    threshold comes with each request), on the engine's network (CUDA: the one copy on the
    GPU), in a ``BatchingDetector`` that gathers the cameras' images (up to ``DETECT_BATCH``,
    ``DETECT_WAIT_MS``); on CUDA the images are padded to ``retina.GPU_BUCKETS`` shapes, so
    cuDNN sees a few dozen shapes whatever the scans and windows are. Other detectors: the
    engine's, as they are."""
    if cfg.detection.detector != "retina":
        return engine.detector
    from ...engine.batching import BatchingDetector
    from ...engine.detection import make_detector
    from ...engine.retina import GPU_BUCKETS, RetinaDetector

    c = cfg.detection
    network = getattr(engine.detector, "network", None) if isinstance(engine.detector, RetinaDetector) else None
    if network is None:
        network = make_detector("retina", upsample=0).network
    cuda = str(getattr(network, "runtime", "")).startswith("torch-cuda")
    det = RetinaDetector(c.score_threshold, upsample=0, network=network, buckets=GPU_BUCKETS if cuda else None)
    det.detect(np.zeros((64, 64, 3), np.uint8))  # warm up (onnxruntime plans its first run; CUDA loads its kernels)
    return BatchingDetector(det, max_batch=max(2, min(DETECT_BATCH, 2 * n_cameras)), wait_ms=DETECT_WAIT_MS)


def engine_attributes(engine) -> dict:
    """The parent engine's plain options a camera process's engine must share (how faces are
    aligned: ``landmarks``; ``flip`` / ``jitter``, which the service applies anyway)."""
    out = {}
    for k in ("flip", "jitter", "landmarks", "second_choice"):
        v = getattr(engine, k, None)
        if isinstance(v, (bool, int, str)):
            out[k] = v
    return out


def _plain(name: str) -> bool:
    """Whether ``NAME=SPEC`` keeps this camera name (see ``sink.split_source_name``)."""
    return bool(name) and all(ch.isalnum() or ch in "-_." for ch in name)
