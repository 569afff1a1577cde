"""One inference service per machine (per GPU): the networks of every camera process, batched.

Each camera process sends small requests through its own pipe (one pipe per process: a
process killed in the middle of a write breaks only its own pipe, where a shared queue's lock
would be left held for everyone); the images they refer to lie in each client's
shared-memory rings (``shm.SlotRing``):

- ``embed``: chips (N, 150, 150, 3) in a chip slot -> descriptors (N, 128), through one
  ``SharedEmbedder`` that batches the chips of all cameras into one network call;
- ``detect``: an image (a scan region or a window around tracks, grey or RGB, already scaled
  by the camera's scheduler) in an image slot -> the detector's ``Detection`` list;
- ``detect_batch``: several images (a frame's windows around tracks) packed in one slot -> a
  list per image (the detector's ``detect_batch``, or ``detect`` image by image).

Detection calls run on a pool of threads, so a batching detector (``engine.batching.
BatchingDetector``: RetinaFace or the CNN on a GPU) gathers the calls of all cameras into one
network call. The detector is the engine's, or the one the runner gives (``detector=``: the
live run's RetinaFace, with its thresholds, batched).

Answers (descriptors, detections: bytes, not frames) go back on each client's own response
pipe. The service runs in the parent process as threads: the networks release the GIL, and
the engine is the one the runner's factories built (``FaceEngine``'s detector and
descriptor), so another detector plugs in unchanged. It keeps its own accounting: CPU seconds
inside the networks (thread CPU time of the calls), calls, faces and batches.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..embedder import SharedEmbedder
from .shm import SlotRing, unpack

log = logging.getLogger(__name__)


@dataclass
class ClientRings:
    """What the service knows of one camera process (one generation of it)."""

    images: SlotRing
    chips: SlotRing
    requests: object  # Connection: (request id, op, meta) from the client
    responses: object  # Connection: (request id, ok, payload) to the client
    lock: threading.Lock = field(default_factory=threading.Lock)
    alive: bool = True


@dataclass
class ServiceStats:
    embed_calls: int = 0
    detect_calls: int = 0
    embed_cpu_s: float = 0.0  # thread CPU inside the descriptor network
    detect_cpu_s: float = 0.0  # thread CPU inside the detector (a BatchingDetector's added in to_json)
    detect_wall_s: float = 0.0
    detect_images: int = 0  # images detected (a detect_batch request counts each of its images)
    oversize: int = 0  # images too large for a slot (sent through the pipe instead)
    dropped_answers: int = 0  # answers to a camera process that had gone
    errors: int = 0

    def to_json(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


class InferenceService:
    def __init__(self, engine, embed_batch: int = 32, embed_wait_ms: float = 2.0, detect_threads: int = 4,
                 detector=None):
        """``engine``: a ``FaceEngine`` (its ``detector`` and ``descriptor``, with ``flip`` and
        ``jitter``); ``detector``: the detector that answers detection requests, if not the
        engine's."""
        self.engine = engine
        self._detector = detector
        self.stats = ServiceStats()
        self._stats_lock = threading.Lock()
        self.embedder = SharedEmbedder(self._compute, embed_batch, embed_wait_ms)
        self._pool = ThreadPoolExecutor(max(1, detect_threads), thread_name_prefix="service-detect")
        self._clients: dict[str, ClientRings] = {}
        self._closing: list[SlotRing] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="inference-service", daemon=True)
        self._stopped = threading.Event()

    # ------------------------------------------------------------------ clients
    def register(self, key: str, images: SlotRing, chips: SlotRing, requests, responses) -> None:
        """A client: its rings and the parent's ends of its request and response pipes."""
        with self._lock:
            self._clients[key] = ClientRings(images, chips, requests, responses)

    def unregister(self, key: str) -> None:
        """Forget a client (it ended or died); its rings are unlinked now and unmapped once no
        request uses them any more."""
        with self._lock:
            c = self._clients.pop(key, None)
            if c is not None:
                self._retire(c)
            self._closing = [r for r in self._closing if not r.close()]

    def _retire(self, c: ClientRings) -> None:
        self._closing += [c.images, c.chips]
        for conn in (c.requests, c.responses):
            try:
                conn.close()
            except OSError:  # pragma: no cover
                pass

    # ------------------------------------------------------------------ run
    def start(self) -> "InferenceService":
        self.embedder.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)
        self.embedder.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for key in list(self._clients):
                self._retire(self._clients.pop(key))
            self._closing = [r for r in self._closing if not r.close()]
        if self._closing:  # pragma: no cover - a view outlived every request: unlinked anyway
            log.warning("%d shared-memory rings still mapped at shutdown (unlinked)", len(self._closing))

    def _loop(self) -> None:
        from multiprocessing.connection import wait

        while not self._stopped.is_set():
            with self._lock:
                conns = {c.requests: key for key, c in self._clients.items() if c.alive}
            if not conns:
                self._stopped.wait(0.05)
                continue
            try:
                ready = wait(list(conns), timeout=0.1)
            except (OSError, ValueError):  # a pipe closed while waiting (unregistered): look again
                continue
            for conn in ready:
                key = conns[conn]
                try:
                    rid, op, meta = conn.recv()
                except Exception:  # noqa: BLE001 - the client died (maybe mid-message), or was unregistered
                    with self._lock:
                        c = self._clients.get(key)
                        if c is not None:
                            c.alive = False
                    continue
                try:
                    self._dispatch(key, rid, op, meta)
                except Exception as e:  # noqa: BLE001 - a bad request fails that request only
                    log.exception("service request failed")
                    self.stats.errors += 1
                    self._answer(key, rid, False, f"{type(e).__name__}: {e}")

    def _dispatch(self, key: str, rid: int, op: str, meta: dict) -> None:
        with self._lock:
            client = self._clients.get(key)
        if client is None:  # a camera process that has gone
            self.stats.dropped_answers += 1
            return
        if op == "embed":
            fut = self.embedder.submit(self._array(client.chips, meta))
        elif op == "detect":
            fut = self._pool.submit(self._detect, self._array(client.images, meta), meta.get("args", ()),
                                    meta.get("kwargs", {}))
        elif op == "detect_batch":
            fut = self._pool.submit(self._detect_batch, unpack(self._array(client.images, meta), meta["parts"]),
                                    meta.get("args", ()), meta.get("kwargs", {}))
        else:
            raise ValueError(f"unknown request {op!r}")
        fut.add_done_callback(lambda f: self._done(key, rid, f))

    @property
    def detector(self):
        return self._detector if self._detector is not None else self.engine.detector

    def _array(self, ring: SlotRing, meta: dict) -> np.ndarray:
        if "data" in meta:  # larger than a slot: came through the pipe
            self.stats.oversize += 1
            return meta["data"]
        return ring.view(meta["slot"], meta["shape"], meta["dtype"])

    def _compute(self, chips: np.ndarray) -> np.ndarray:
        c0 = time.thread_time()
        e = self.engine
        out = e.descriptor.compute(chips, flip=e.flip, jitter=e.jitter)
        with self._stats_lock:
            self.stats.embed_calls += 1
            self.stats.embed_cpu_s += time.thread_time() - c0
        return out

    def _detect(self, image: np.ndarray, args, kwargs):
        c0, t0 = time.thread_time(), time.perf_counter()
        dets = self.detector.detect(image, *args, **kwargs)
        self._count_detect(1, c0, t0)
        return list(dets)

    def _detect_batch(self, images: list[np.ndarray], args, kwargs):
        c0, t0 = time.thread_time(), time.perf_counter()
        det = self.detector
        if hasattr(det, "detect_batch"):
            found = det.detect_batch(images, *args, **kwargs)
        else:
            found = [det.detect(i, *args, **kwargs) for i in images]
        self._count_detect(len(images), c0, t0)
        return [list(d) for d in found]

    def _count_detect(self, images: int, c0: float, t0: float) -> None:
        with self._stats_lock:
            self.stats.detect_calls += 1
            self.stats.detect_images += images
            self.stats.detect_cpu_s += time.thread_time() - c0
            self.stats.detect_wall_s += time.perf_counter() - t0

    def _done(self, key: str, rid: int, fut) -> None:
        e = fut.exception()
        if e is not None:
            self.stats.errors += 1
            self._answer(key, rid, False, f"{type(e).__name__}: {e}")
        else:
            self._answer(key, rid, True, fut.result())

    def _answer(self, key: str, rid: int, ok: bool, payload) -> None:
        with self._lock:
            client = self._clients.get(key)
        if client is None or not client.alive:
            self.stats.dropped_answers += 1
            return
        try:
            with client.lock:
                client.responses.send((rid, ok, payload))
        except (ValueError, OSError):  # the client's pipe is closed (it died)
            self.stats.dropped_answers += 1

    def control(self, key: str, message: str) -> bool:
        """A control message to a client (``"stop"``) on its answer pipe (request id 0)."""
        with self._lock:
            client = self._clients.get(key)
        if client is None or not client.alive:
            return False
        try:
            with client.lock:
                client.responses.send((0, True, message))
        except (ValueError, OSError):
            return False
        return True

    def to_json(self) -> dict:
        d = self.stats.to_json()
        d.update(faces=self.embedder.faces, embed_batches=self.embedder.batches, max_embed_batch=self.embedder.max_batch,
                 embed_busy_s=round(self.embedder.busy_s, 3))
        det = self.detector
        if hasattr(det, "batches") and hasattr(det, "largest"):  # a BatchingDetector: its network calls, and
            # the CPU of its thread (the calls that wait for it spend none)
            d.update(detect_batches=det.batches, max_detect_batch=det.largest,
                     detect_cpu_s=round(self.stats.detect_cpu_s + det.cpu_s, 3))
        return d

