"""A live run: sources -> per-camera workers -> shared embedder -> watchlist search -> alerts.

Threads (one process):

- a **reader** per camera (``SourceReader``): decodes frames into a bounded ``FrameQueue``;
  for live sources (and files read in real time) the newest frame wins and every dropped frame
  is counted; a dead or stalled stream is reported and reconnected with back-off;
- a **worker** per camera (``CameraWorker``): detection on a schedule (``DetectionScheduler``),
  tracking, best-shot selection, alignment of the shots worth embedding, the watchlist search of
  each improved track template and the alert decision; it is given what it works with
  (``WorkerParts``: the run's aligner, embedder, index, policy, and callbacks for what goes back
  to the run), not the runner;
- one **embedder** shared by all cameras, batching their chips;
- the caller's thread: receives events (``on_event``), handles Ctrl-C / SIGTERM (clean stop:
  readers stop, workers finish their frame, tracks end, the summary is given).

Privacy invariant: frames, chips and templates stay in memory. A track that matched nobody is
dropped with its shots when it ends; events carry no chip or template of such a face, and the
log carries no descriptor or crop of anyone.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Callable

import numpy as np

from .alerts import AlertDecision, AlertEvent, AlertPolicy
from .align import Aligner
from .bestshot import BestShots, Shot, quality_bound
from .config import RunConfig
from .embedder import SharedEmbedder, engine_compute, second_compute
from .scheduler import PROFILES, DetectionScheduler
from .sink import AlertRecord, DeploymentEnded, split_source_name
from .sources import Frame, FrameQueue, FrameSource, SourceError, SourceEvent, SourceReader, open_source
from .tracker import Track, TrackedDetection, Tracker, colour_histogram

if TYPE_CHECKING:
    from ..engine.pipeline import Face
    from ..scoring.model import WatchlistScoring
    from ..watchlist.index import SearchIndex

log = logging.getLogger(__name__)
SEARCH_DEPTH = 3  # nearest subjects a track's template is decided against
SEARCH_DEPTH_FUSED = 5  # with fused scoring, whose per-probe thresholds can favour a farther subject


class RunError(RuntimeError):
    """A run that cannot start (bad source, bad watchlist...)."""


@dataclass
class ThresholdInfo:
    threshold: float
    reason: str
    target_fpir: float
    expected_fpir: float | None
    given: bool


def decide_threshold(n_subjects: int, threshold: float | None, target_fpir: float) -> ThresholdInfo:
    """The threshold to use and why (from the target FPIR and watchlist size unless given)."""
    from ..watchlist.threshold import choose_threshold, fpir

    if threshold is not None:
        try:
            exp = float(fpir(threshold, n_subjects))
            why = (f"{threshold:.3f}: given by the operator; expected false alert rate per face "
                   f"{exp * 100:.3g}% at {n_subjects} subjects")
        except Exception as e:  # table missing: say so
            exp, why = None, f"{threshold:.3f}: given by the operator (expected rate unknown: {e})"
        return ThresholdInfo(float(threshold), why, target_fpir, exp, True)
    c = choose_threshold(n_subjects, target_fpir)
    return ThresholdInfo(float(c.threshold), c.reason, target_fpir, float(c.expected_fpir), False)


@dataclass
class CameraStats:
    name: str
    kind: str
    frames: int = 0  # frames processed
    read: int = 0  # frames read from the source
    dropped: int = 0
    total: int | None = None  # frame count of a file
    fps_source: float = 25.0
    state: str = "starting"
    detections: int = 0
    scans: int = 0
    window_runs: int = 0
    embedded: int = 0
    embedded_second: int = 0  # of which with the second model's feature too (fused scoring)
    aligned: int = 0
    merged: int = 0
    faces_seen: int = 0
    alerts: int = 0
    too_poor: int = 0  # faces seen whose every shot was below the lowest quality band: not searched
    reconnects: int = 0
    busy_s: float = 0.0  # worker time spent on frames (wall clock)
    cpu_s: float = 0.0  # worker CPU time spent on frames (its thread only)
    scan_cpu_s: float = 0.0  # of which scanning for new faces
    window_cpu_s: float = 0.0  # of which re-detecting around tracks
    scanned_mpx: float = 0.0  # megapixels the scans looked at
    last_time: float = 0.0
    last_frame_at: float = 0.0  # epoch seconds of the last frame processed (camera health)

    def to_json(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class WorkerParts:
    """What every camera worker of a run works with, besides its own source, queue, stats,
    scheduler and tracker (``LiveRunner.worker_parts``). A worker holds these and nothing of the
    runner: what must go back to the run goes through the callbacks."""

    aligner: Aligner  # landmarks, chip and quality of a detection
    band_of: Callable[[Face], int | None]  # a face's quality band (None: too poor to search)
    new_shots: Callable[[], BestShots]  # an empty best-shot selector, for a track's first face
    embedder: SharedEmbedder  # shared by the cameras: descriptors of the chips, as futures
    index: SearchIndex  # the watchlist's templates
    n_subjects: int
    scoring: WatchlistScoring | None  # thresholds per subject and quality band (None: the policy's one)
    policy: AlertPolicy  # the alert decision (shared by the cameras)
    reid_distance: float  # a new track whose first template is this near a lost one continues it (0: never)
    on_alert: Callable[[AlertEvent], None]  # an alert or its update: the run records it, then tells of it
    on_event: Callable[[dict], None]  # other events for the run's stream (a worker that failed)
    on_frame: Callable[[CameraWorker, Frame], None]  # after each frame (the runner's frame_hook)
    stopping: Callable[[], bool]  # the run is stopping: leave the frames still queued


class CameraWorker(threading.Thread):
    """One camera: its frames through the scheduler's detection, the tracker, best shots,
    alignment, the shared embedder, the watchlist search and the alert policy."""

    def __init__(self, source: FrameSource, queue: FrameQueue, stats: CameraStats, scheduler: DetectionScheduler,
                 tracker: Tracker, parts: WorkerParts, annotator=None):
        super().__init__(name=f"camera-{source.name}", daemon=True)
        self.source = source
        self.queue = queue
        self.stats = stats
        self.scheduler = scheduler
        self.tracker = tracker
        self.parts = parts
        self.annotator = annotator
        self.error: BaseException | None = None
        self._pending: list = []

    # ------------------------------------------------------------------ per frame
    def process(self, frame: Frame) -> None:
        rgb = frame.image
        t = frame.time
        self._collect()  # embeddings of the previous frame's best shots
        self.tracker.advance(t)
        self._end_tracks(self.tracker.pop_ended())
        predicted = [tr.predict(t) for tr in self.tracker.tracks]
        step = self.scheduler.step(rgb, None, predicted, frame.grey)
        if step.kind != "none":
            self.stats.detections += len(step.detections)
            weak = step.start_score
            tdets = [TrackedDetection(np.asarray(d.box, np.float64), d.score, colour_histogram(rgb, d.box), d,
                                      starts=weak is None or d.score >= weak)
                     for d in step.detections]
            pairs, _new = self.tracker.update(tdets, t, frame.wall, frame.index, step.searched)
            self._best_shots(rgb, frame, pairs)
        sch = self.scheduler
        st = self.stats
        st.scans, st.window_runs, st.scan_cpu_s, st.window_cpu_s = sch.scans, sch.window_runs, sch.scan_cpu_s, sch.window_cpu_s
        st.scanned_mpx = sch.scanned_px / 1e6
        self.stats.faces_seen = self.tracker.faces_seen
        if self.annotator is not None:
            self.annotator.write(rgb, self.tracker.tracks, t)

    def _best_shots(self, rgb: np.ndarray, frame: Frame, pairs) -> None:
        """Align the faces that may earn a place among their track's best shots; embed those
        that do (asynchronously, on the shared embedder; results are taken at the next frame)."""
        cands: list[tuple[Track, object]] = []
        for tr, d in pairs:
            if tr.shots is None:
                tr.shots = self.parts.new_shots()
            shots = tr.shots
            det = d.payload
            if not shots.wants(quality_bound(det.width, det.score), frame.index):
                continue  # cannot beat the kept shots, or too soon after the last one: not even aligned
            face = self.parts.aligner.align(rgb, det)
            self.stats.aligned += 1
            band = self.parts.band_of(face)
            if band is None:  # below the lowest quality band: not searched, counted when the track ends
                tr.too_poor = True
                continue
            if shots.wants(face.quality.score, frame.index):
                cands.append((tr, face, band))
        if not cands:
            return
        for tr, *_ in cands:
            tr.shots.reserve(frame.index)
        fut = self.parts.embedder.submit_pair(np.stack([f.chip for _, f, _ in cands]), [f.second_crop for _, f, _ in cands])
        self._pending.append((fut, cands, frame.index, frame.time))

    def _collect(self, wait: bool = True) -> None:
        pending, self._pending = self._pending, []
        changed: list[Track] = []
        last = None
        for fut, cands, index, t in pending:
            desc, second = fut.result(timeout=120)
            last = (index, t)
            for j, ((tr, face, band), dvec) in enumerate(zip(cands, desc)):
                shots = tr.shots
                if shots is None:  # the track ended meanwhile
                    continue
                shot = Shot(float(face.quality.score), dvec, index, t, tuple(face.box), face.chip,
                            None if second is None or not np.isfinite(second[j]).all() else second[j])
                first = not shots.shots
                self.stats.embedded += 1
                self.stats.embedded_second += shot.second is not None
                if shots.add(shot):
                    tr.band = band if tr.band is None else min(tr.band, band)
                    if first and self._reidentify(tr):
                        continue
                    if tr not in changed:
                        changed.append(tr)
        if changed:
            self._search(changed, last)

    def _reidentify(self, tr: Track) -> bool:
        """A new track whose first template matches a track lost earlier continues that track."""
        limit = self.parts.reid_distance
        if limit <= 0:
            return False
        tpl = tr.shots.template
        best, best_d = None, limit
        for other in self.tracker.tracks:
            if other is tr or other.last_time >= tr.first_time or other.shots is None:
                continue
            ot = other.shots.template
            if ot is None:
                continue
            d = float(np.linalg.norm(ot - tpl))
            if d < best_d:
                best, best_d = other, d
        if best is None:
            return False
        best.shots.absorb(tr.shots)
        tr.shots.clear()
        self.tracker.merge(best, tr)
        self.parts.policy.merge_tracks(self.source.name, best.id, tr.id)
        self.stats.merged += 1
        self._search([best], None)
        return True

    def _search(self, tracks: list[Track], at: tuple[int, float] | None) -> None:
        from ..watchlist.index import top_subjects

        q = np.stack([tr.shots.template for tr in tracks])
        p = self.parts
        sc = p.scoring
        # fused scoring moves each subject's threshold by the second model's say: look a little deeper
        dist, lab = top_subjects(p.index, q, min(SEARCH_DEPTH_FUSED if sc is not None and sc.fused else SEARCH_DEPTH,
                                                 p.n_subjects))
        for tr, drow, lrow in zip(tracks, dist, lab):
            matches = [(int(l), float(d)) for d, l in zip(drow, lrow) if l >= 0]
            if sc is not None:
                band = tr.band if tr.band is not None else len(sc.z) - 1
                d2 = sc.second_distances(tr.shots.second_template, [l for l, _ in matches])
                decided = []
                for j, (l, d) in enumerate(matches):  # each candidate's threshold, and how it was decided
                    dec = sc.decision(l, band, None if d2 is None else float(d2[j]))
                    decided.append((l, d, dec.threshold, AlertDecision(dec.score_for(d), dec.z_threshold, dec.band,
                                                                       dec.second_model)))
                matches = decided
            tr.nearest = matches[0][1] if matches else None
            best = tr.shots.best
            events = p.policy.consider(
                self.source.name, tr.id, matches,
                at[0] if at is not None else tr.last_frame,
                at[1] if at is not None else tr.last_time,
                tr.first_wall, chip=best.chip if best else None, template=tr.shots.template,
            )
            for ev in events:
                tr.alerts[ev.alert.subject] = ev.alert
                p.on_alert(ev)

    def _end_tracks(self, ended: list[Track]) -> None:
        for tr in ended:
            if tr.too_poor and (tr.shots is None or not tr.shots.shots) and tr.confirmed:
                self.stats.too_poor += 1
            self.parts.policy.track_ended(self.source.name, tr.id)
            tr.drop_data()

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        st = self.stats
        stopping = self.parts.stopping
        try:
            while True:
                try:
                    frame = self.queue.get(timeout=0.2)
                except EOFError:
                    break
                if frame is None:
                    if stopping():
                        break
                    continue
                if stopping():
                    break
                t0, c0 = time.perf_counter(), time.thread_time()
                self.process(frame)
                st.busy_s += time.perf_counter() - t0
                st.cpu_s += time.thread_time() - c0
                st.frames += 1
                st.last_time = frame.time
                st.last_frame_at = time.time()
                self.parts.on_frame(self, frame)
                del frame
        except BaseException as e:  # report, let the other cameras go on
            self.error = e
            log.exception("camera %s stopped on an error", self.source.name)
            self.parts.on_event({"event": "source", "camera": self.source.name, "state": "error",
                                 "message": f"{type(e).__name__}: {e}"})
        finally:
            try:
                self._collect()
            except Exception:  # embedder stopped under us (shutdown): the shots are dropped anyway
                self._pending = []
            self._end_tracks(self.tracker.finish())
            st.faces_seen = self.tracker.faces_seen
            st.dropped = self.queue.dropped + self.queue.discard()
            if self.annotator is not None:
                self.annotator.close()


class LiveRunner:
    """Build with a RunConfig, ``prepare()`` (raises RunError on bad input), then ``run()``."""

    def __init__(self, cfg: RunConfig, on_event: Callable[[dict], None] | None = None, engine=None,
                 watchlist=None, enrol_engine=None, sink=None, threshold: float | None = None,
                 scoring_evidence: dict | None = None, reference_band=None):
        self.cfg = cfg
        self.scoring_evidence = scoring_evidence  # a deployment planned with the calibrated scoring model
        self.reference_band = reference_band  # (subjects,) worst band of each subject's references (overrides)
        self.scoring = None  # WatchlistScoring when the scoring model decides
        self.sink = sink  # AlertSink (live/sink.py): alerts persisted before anyone is notified
        self.fixed_threshold = threshold  # a deployment's own threshold
        self.on_event = on_event or (lambda e: None)
        self.engine = engine
        self.enrol_engine = enrol_engine
        self.watchlist = watchlist
        self.enrolment = None
        self.stop_event = threading.Event()
        self.drain = False
        self.shot_args = dict(k=cfg.bestshot.shots, min_gain=cfg.bestshot.min_gain,
                              min_gap_frames=cfg.bestshot.min_gap_frames)
        self.sources: list[FrameSource] = []
        self.stats: list[CameraStats] = []
        self._lock = threading.Lock()
        self._emit_lock = threading.Lock()
        self.started = None
        self.interrupted = False
        self.summary: dict | None = None
        self._faces_stored: dict[str, int] = {}
        self._poor_stored: dict[str, int] = {}
        self.frame_hook: Callable[[CameraWorker, Frame], None] | None = None  # tests and benchmarks
        self.signalled: int | None = None
        self._health_due = False
        self._last_health = 0.0
        self._health_last: dict[str, tuple[int, float]] = {}

    # ------------------------------------------------------------------ setup
    def emit(self, event: dict) -> None:
        with self._emit_lock:
            self.on_event(event)

    def prepare(self) -> None:
        from ..engine.pipeline import FaceEngine
        from ..watchlist.enrol import load_watchlist
        from ..watchlist.index import make_index
        from ..watchlist.model import WatchlistError

        c = self.cfg
        # Sources first: a typo in a path or URL is the commonest mistake, and cheap to find.
        for spec in c.sources:
            try:
                name, spec = split_source_name(spec)
                src = open_source(spec, name, folder_fps=c.folder_fps, timeout_s=c.stall_timeout_s)
                src.open()
            except SourceError as e:
                for s in self.sources:
                    s.close()
                raise RunError(f"source {e}") from None
            self.sources.append(src)
        names = [s.name for s in self.sources]
        for i, s in enumerate(self.sources):  # two cameras with the same name: number them
            if names.count(s.name) > 1:
                s.name = f"{s.name}#{i + 1}"
        if self.engine is None:
            from ..engine.descriptor import make_descriptor

            # one onnxruntime thread: the embedder runs beside the camera workers, and a
            # multi-threaded session would spin on the cores they need. On a CUDA GPU (torch
            # installed) descriptor and CNN detector run there ($OPENLFR_RUNTIME=onnx: not).
            self.engine = FaceEngine(detector=c.detection.detector, upsample=c.detection.upsample,
                                     min_face=None, descriptor=make_descriptor("auto", threads=c.embed_threads),
                                     second=c.second_model)
        self.aligner = Aligner(self.engine)
        self._warm_up()
        if self.watchlist is None and c.watchlist is None:
            self.close_sources()
            raise RunError("no watchlist given")
        if self.watchlist is None:
            enrol = self.enrol_engine or FaceEngine(second=c.second_model)
            try:
                self.watchlist, self.enrolment = load_watchlist(c.watchlist, enrol)
            except WatchlistError as e:
                self.close_sources()
                raise RunError(f"watchlist: {e}") from None
        if len(self.watchlist) == 0 or len(self.watchlist.templates) == 0:
            self.close_sources()
            raise RunError("watchlist: no subject with an accepted image")
        self.n_subjects = len(self.watchlist)
        self.index = make_index("exact")
        self.index.add(self.watchlist.templates, self.watchlist.template_subject)
        from ..scoring import load_scoring_model

        self.scoring_model = load_scoring_model()
        ev = self.scoring_evidence
        if ev is not None and ev.get("kind") == "openlfr scoring model":
            self._use_scoring(float(ev["target_fpir"]), "the deployment's authorised scoring model: ")
        elif self.fixed_threshold is not None:
            self.threshold = ThresholdInfo(float(self.fixed_threshold), f"{self.fixed_threshold:.3f}: the deployment's authorised threshold",
                                           c.alerts.target_fpir, None, True)
        elif c.alerts.threshold is None:
            self._use_scoring(c.alerts.target_fpir, "")
        else:
            self.threshold = decide_threshold(self.n_subjects, c.alerts.threshold, c.alerts.target_fpir)
        self.policy = AlertPolicy(self.threshold.threshold, c.alerts.cooldown_s, c.alerts.min_improvement,
                                  self.watchlist.subjects)

    def _use_scoring(self, target: float, prefix: str) -> None:
        """Cohort statistics of the watchlist and a distance threshold per subject and band."""
        from ..scoring import ScoringError

        m = self.scoring_model
        try:
            self.scoring = m.for_watchlist(self.watchlist.templates, self.watchlist.template_subject, target,
                                           self.reference_band, self.watchlist.second_templates if self._second_model() else None)
        except ScoringError as e:
            self.close_sources()
            raise RunError(f"scoring: {e}") from None
        if m.probe_flip:  # probes embedded as calibrated (also by a multi-process run's service: the engine's flip)
            self.engine.flip = True
        ev = m.evidence(self.n_subjects, target)
        self.threshold = ThresholdInfo(float(ev["threshold"]), prefix + ev["reason"], target, target, False)

    def _second_model(self):
        """The engine's second model (None: not installed, not wanted, or not RetinaFace); an error
        when the configuration asks for it (``second_model="sface"``) and it is not installed."""
        from ..engine.models import ModelFileError

        try:
            return self.engine.second_model
        except ModelFileError as e:
            self.close_sources()
            raise RunError(f"second model: {e}") from None

    def band_of(self, face) -> int | None:
        """The face's quality band (None: too poor to search)."""
        return self.scoring_model.band_of_face(face)

    def _warm_up(self) -> None:
        """First calls are slow (onnxruntime plans its memory, dlib builds its detector): make
        them now, on blank images, so the first faces of the run are not late."""
        t0 = time.perf_counter()
        self.engine.descriptor.compute(np.zeros((1, 150, 150, 3), np.uint8))
        if self.cfg.detection.detector == "hog":
            from ..engine.detection import make_detector

            make_detector("hog", upsample=0).detect(np.zeros((100, 100), np.uint8))
        log.info("warm-up %.2f s", time.perf_counter() - t0)

    def close_sources(self) -> None:
        for s in self.sources:
            s.close()

    # ------------------------------------------------------------------ events
    def alert_event(self, ev: AlertEvent) -> None:
        stored, stored_id = True, None
        if self.sink is not None:  # persisted first: nobody hears of an alert the store lost
            try:
                stored_id = self.sink.record(AlertRecord.from_alert(ev.alert))
            except Exception as e:  # noqa: BLE001 - reported, and the run goes on or stops
                stored = False
                log.error("alert %s not stored: %s", ev.alert.id, e)
                self.emit({"event": "error", "camera": ev.alert.camera, "message": f"alert not stored: {e}"})
                if isinstance(e, DeploymentEnded):
                    self.stop()
        with self._lock:
            for st in self.stats:
                if st.name == ev.alert.camera and ev.kind == "alert":
                    st.alerts += 1
        d = ev.alert.to_json("alert" if ev.kind == "alert" else "alert_update")
        d["track"] = ev.track
        if self.sink is not None:
            d["stored"] = stored
            # the database's alert id (None while a camera worker's alert waits in its disk buffer);
            # "alert" is the run's own numbering
            d["alert_id"] = stored_id if isinstance(stored_id, int) else None
        self.emit(d)

    def _source_event(self, ev: SourceEvent) -> None:
        for st in self.stats:
            if st.name == ev.camera:
                st.state = {"down": "down", "reconnecting": "reconnecting", "reconnected": "live", "ended": "ended",
                            "error": "error"}.get(ev.state, st.state)
                if ev.state == "reconnected":
                    st.reconnects += 1
        self._health_due = True  # report the change at once (deployment runs)
        lvl = logging.WARNING if ev.state in ("down", "reconnecting", "error") else logging.INFO
        log.log(lvl, "camera %s: %s %s", ev.camera, ev.state, ev.message)
        self.emit({"event": "source", "camera": ev.camera, "state": ev.state, "message": ev.message})

    def frame_done(self, worker: CameraWorker, frame: Frame) -> None:
        if self.frame_hook is not None:
            self.frame_hook(worker, frame)

    def stopping(self) -> bool:
        """Whether the workers should leave the frames still queued (stopped, not draining)."""
        return self.stop_event.is_set() and not self.drain

    # ------------------------------------------------------------------ camera workers
    def worker_parts(self) -> WorkerParts:
        """What every camera worker works with (once the embedder runs)."""
        return WorkerParts(
            aligner=self.aligner, band_of=self.band_of, new_shots=partial(BestShots, **self.shot_args),
            embedder=self.embedder, index=self.index, n_subjects=self.n_subjects, scoring=self.scoring,
            policy=self.policy, reid_distance=self.cfg.tracking.reid_distance, on_alert=self.alert_event,
            on_event=self.emit, on_frame=self.frame_done, stopping=self.stopping,
        )

    def camera_detector(self):
        """A camera's detector and its threshold in the windows around tracks (None: the
        detector's own). HOG and RetinaFace: one per camera (each camera's worker runs in a thread
        of its own), made by the engine's factory now (a camera process times what it makes);
        the CNN, and RetinaFace run by the inference service (a camera process's
        ``RemoteDetector``): the engine's, shared."""
        from ..engine import detection

        c = self.cfg.detection
        if c.detector == "hog":  # on the grey frames
            return detection.make_detector("hog", upsample=c.upsample, threshold=c.threshold), c.window_threshold
        if c.detector == "retina" and not getattr(self.engine.detector, "remote", False):
            det = detection.make_detector("retina", upsample=0, threads=1, threshold=c.score_threshold)
            det.detect(np.zeros((64, 64, 3), np.uint8))  # warm up (onnxruntime plans its first run)
            return det, c.window_score_threshold
        return self.engine.detector, (c.window_score_threshold if c.detector == "retina" else None)

    def camera_worker(self, source: FrameSource, queue: FrameQueue, stats: CameraStats, ids,
                      parts: WorkerParts, annotator=None) -> CameraWorker:
        """A camera's worker: its detection schedule (the detector's profile, the config's
        overrides, the source's frame rate) and its tracker (track ids from the run's ``ids``)."""
        c = self.cfg.detection
        prof = PROFILES[c.detector]
        detector, window_thr = self.camera_detector()
        scheduler = DetectionScheduler(
            detector, motion=c.motion, full_every=c.full_every, window_threshold=window_thr, every=c.every,
            track_every=c.track_every, scale=c.scale, scan_pixels=c.scan_pixels or prof.scan_pixels,
            min_face_px=c.min_face_px, upsample=c.upsample, track_face_px=c.track_face_px or prof.track_face_px,
            min_face=c.min_face or prof.min_face, roi=c.roi, fps=source.fps, window=prof.window,
            window_start=prof.window_start,
        )
        t = self.cfg.tracking
        tracker = Tracker(source.name, t.max_absence_s, t.min_hits, t.iou_gate, t.appearance_weight, ids)
        return CameraWorker(source, queue, stats, scheduler, tracker, parts, annotator)

    # ------------------------------------------------------------------ run
    def start_event(self) -> dict:
        th = self.threshold
        return {
            "event": "start",
            "sources": [{"camera": s.name, "kind": s.kind, "fps": round(s.fps, 3), "frames": s.frame_count}
                        for s in self.sources],
            "watchlist_subjects": self.n_subjects,
            "watchlist_templates": int(len(self.watchlist.templates)),
            "threshold": round(th.threshold, 4),
            "threshold_reason": th.reason,
            "target_fpir": th.target_fpir,
            "detector": self.cfg.detection.detector,
            # the second model fused in the score, and how many of the watchlist's templates have its feature
            "second_model": "sface" if self.scoring is not None and self.scoring.fused else None,
            "second_templates": self.watchlist.n_second,
        }

    def stop(self, drain: bool = False) -> None:
        """Stop the run (Ctrl-C, SIGTERM): readers stop, workers finish their frame, tracks end."""
        self.drain = drain
        self.interrupted = True
        self.stop_event.set()

    def run(self) -> dict:
        """Run until every source has ended or ``stop()``; returns the summary (also emitted)."""
        c = self.cfg
        prev = self._install_signals()  # first: a SIGTERM from now on stops the run cleanly
        self.emit(self.start_event())
        # the scoring model was calibrated on probes embedded as it says (flip-averaged or not)
        flip = bool(self.engine.flip or (self.scoring is not None and self.scoring_model.probe_flip))
        second = self.engine.second_model if self.scoring is not None and self.scoring.fused else None
        self.aligner.second = second  # the second crop is cut only when it will be used
        self.embedder = SharedEmbedder(engine_compute(self.engine, flip), c.embed_batch, c.embed_wait_ms,
                                       second=None if second is None else second_compute(second)).start()
        import itertools

        ids = itertools.count(1)
        parts = self.worker_parts()
        readers, workers = [], []
        for src in self.sources:
            realtime = src.live if c.realtime is None else (c.realtime or src.live)
            q = FrameQueue(c.queue_size, drop=realtime)
            st = CameraStats(src.name, src.kind, total=src.frame_count, fps_source=src.fps, state="live")
            self.stats.append(st)
            readers.append(SourceReader(src, q, self.stop_event, self._source_event, realtime=realtime and not src.live,
                                        reconnect_max_s=c.reconnect_max_s, max_frames=c.max_frames))
            annotator = None
            if c.annotate is not None and not workers:  # the first camera's annotated video
                from .annotate import Annotator

                annotator = Annotator(c.annotate, src.fps, self.policy)
            workers.append(self.camera_worker(src, q, st, ids, parts, annotator))
        self.started = time.monotonic()
        cpu0 = os.times()
        try:
            for t in readers + workers:
                t.start()
            last_maintain = time.monotonic()
            self._report_health()
            while any(w.is_alive() for w in workers):
                for w in workers:
                    w.join(timeout=0.1)
                for r, st in zip(readers, self.stats):
                    st.read = r.frames_read
                    st.dropped = r.queue.dropped
                last_maintain = self._keep_sink(last_maintain)
        finally:
            self.stop_event.set()
            for r in readers:
                r.join(timeout=5)
            for r, st in zip(readers, self.stats):  # the final counts, before the sink's last health report
                st.read = r.frames_read
                st.dropped = r.queue.dropped
            self.embedder.stop()
            self._close_sink()
            self._restore_signals(prev)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        cpu1 = os.times()
        self.summary = self._summary(elapsed, (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system))
        self.emit(self.summary)
        return self.summary

    def _keep_sink(self, last_maintain: float) -> float:
        """Between polls of a running job: hand the faces-seen counts to the sink and, every
        ``maintain_every_s``, run the deployment's upkeep; stop once the deployment has ended.
        Returns the time of the last upkeep."""
        if self.sink is None:
            return last_maintain
        self._flush_faces_seen()
        if self._health_due or time.monotonic() - self._last_health >= self.cfg.health_every_s:
            self._last_health = time.monotonic()
            self._report_health()
        if time.monotonic() - last_maintain >= self.cfg.maintain_every_s:
            last_maintain = time.monotonic()
            if not self.sink.maintain():
                log.warning("the deployment has ended: stopping")
                self.emit({"event": "deployment_ended"})
                self.stop()
        return last_maintain

    def _close_sink(self) -> None:
        """At the end of a run: the last faces-seen counts and the cameras' final health report."""
        if self.sink is not None:
            self._flush_faces_seen()
            self._report_health(final=True)

    def _flush_faces_seen(self) -> None:
        """Add each camera's new tracks to the deployment's faces-seen count."""
        for st in self.stats:
            n = st.faces_seen - self._faces_stored.get(st.name, 0)
            poor = st.too_poor - self._poor_stored.get(st.name, 0)
            if n > 0 or poor > 0:
                try:
                    self.sink.count_faces_seen(st.name, max(n, 0), too_poor=max(poor, 0))
                    self._faces_stored[st.name] = st.faces_seen
                    self._poor_stored[st.name] = st.too_poor
                except Exception as e:  # noqa: BLE001 - retried at the next flush
                    log.error("faces seen on %s not stored: %s", st.name, e)

    def _report_health(self, final: bool = False) -> None:
        """Each camera's health to the deployment (state, frames/s, dropped, faces seen, last frame)."""
        self._health_due = False
        if self.sink is None or not self.stats:
            return
        now = time.monotonic()
        cams = []
        for st in self.stats:
            frames, t = self._health_last.get(st.name, (0, self.started or now))
            fps = (st.frames - frames) / (now - t) if now - t > 0.2 else None
            if fps is not None:
                self._health_last[st.name] = (st.frames, now)
            state = {"live": "up", "starting": "up", "down": "down", "reconnecting": "reconnecting", "ended": "ended",
                     "error": "down"}.get(st.state, "up")
            message = "the camera's worker failed" if st.state == "error" else ""
            if final and state != "ended":  # nobody watches this camera any more
                state, message = "down", "the run was stopped"
            cams.append({"camera": st.name, "state": state, "fps": round(fps, 2) if fps is not None else 0.0,
                         "frames": st.read, "dropped": st.dropped, "faces_seen": st.faces_seen,
                         "last_frame_at": st.last_frame_at or None, "message": message})
        try:
            self.sink.report_cameras(cams)
        except Exception as e:  # noqa: BLE001 - health reports must never stop a camera
            log.warning("camera health not reported: %s", e)

    def _summary(self, elapsed: float, cpu_s: float) -> dict:
        frames = sum(s.frames for s in self.stats)
        return {
            "event": "summary",
            "frames": frames,
            "faces_seen": sum(s.faces_seen for s in self.stats),
            "alerts": len(self.policy.alerts),
            "too_poor_to_search": sum(s.too_poor for s in self.stats),
            "dropped_frames": sum(s.dropped for s in self.stats),
            "fps": round(frames / elapsed, 2),
            "alert_updates": self.policy.updates,
            "suppressed": self.policy.suppressed,
            "alerts_per_subject": self.policy.per_subject(),
            "threshold": round(self.threshold.threshold, 4),
            "threshold_reason": self.threshold.reason,
            "elapsed_s": round(elapsed, 3),
            "cpu_s": round(cpu_s, 3),
            "embedded": self.embedder.faces,
            "embed_batches": self.embedder.batches,
            "embedded_second": sum(s.embedded_second for s in self.stats),
            "interrupted": self.interrupted,
            "signal": signal.Signals(self.signalled).name if self.signalled else None,
            "cameras": [s.to_json() for s in self.stats],
        }

    # ------------------------------------------------------------------ signals
    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return None
        prev = {}

        def handler(signum, _frame):
            log.warning("signal %s: stopping", signal.Signals(signum).name)
            self.signalled = signum  # the command exits 128 + signum after the summary (Ctrl-C: 130)
            self.stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                prev[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):  # pragma: no cover
                pass
        return prev

    @staticmethod
    def _restore_signals(prev) -> None:
        if not prev:
            return
        for sig, h in prev.items():
            try:
                signal.signal(sig, h)
            except (ValueError, OSError):  # pragma: no cover
                pass
