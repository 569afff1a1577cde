"""The camera side of the inference service: a detector and a descriptor that call it.

``RemoteDetector`` and ``RemoteDescriptor`` stand in for the engine's detector and descriptor
in a camera process, so the unchanged ``LiveRunner``/``CameraWorker`` code runs there: an
image is copied into a free slot of the process's shared-memory ring, a small request goes to
the service, and the caller waits for the answer (a list of detections, or descriptors) that
a response thread hands to its future. No frame or chip is pickled (unless larger than a
slot, which the service counts).
"""

from __future__ import annotations

import itertools
import logging
import threading
from concurrent.futures import Future

import numpy as np

from .shm import SlotRing, pack

log = logging.getLogger(__name__)

TIMEOUT_S = 120.0


class ServiceError(RuntimeError):
    """The service failed a request (the message says why) or stopped answering."""


class ServiceClient:
    def __init__(self, key: str, requests, responses, images: tuple, chips: tuple, on_control=None):
        """``requests`` / ``responses``: this process's ends of its two pipes to the service;
        ``images`` / ``chips``: ``SlotRing.spec()`` of the rings the parent made for us;
        ``on_control(message)``: called with the parent's control messages (request id 0:
        ``"stop"``), and with ``"stop"`` when the parent is gone."""
        self.on_control = on_control or (lambda m: None)
        self.key = key
        self.requests = requests
        self.responses = responses
        self.images = SlotRing.attach(*images)
        self.chips = SlotRing.attach(*chips)
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="service-answers", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                if not self.responses.poll(0.2):
                    continue
                msg = self.responses.recv()
            except (EOFError, OSError):  # the parent is gone
                self.on_control("stop")
                break
            rid, ok, payload = msg
            if rid == 0:
                self.on_control(payload)
                continue
            with self._lock:
                fut = self._pending.pop(rid, None)
            if fut is None:
                continue
            if ok:
                fut.set_result(payload)
            else:
                fut.set_exception(ServiceError(payload))
        with self._lock:
            pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(ServiceError("service client closed"))

    def call(self, op: str, ring: SlotRing, array: np.ndarray, timeout: float = TIMEOUT_S, **meta):
        """Send ``array`` through ``ring`` with request ``op``; block for the answer."""
        if self._closed.is_set():
            raise ServiceError("service client closed")
        a = np.ascontiguousarray(array)
        slot = ring.acquire(timeout=timeout) if ring.fits(a.nbytes) else None
        try:
            if slot is None:
                meta["data"] = a  # rare: larger than a slot
            else:
                meta["shape"], meta["dtype"] = ring.write(slot, a)
                meta["slot"] = slot
            rid = next(self._ids)
            fut: Future = Future()
            with self._lock:
                self._pending[rid] = fut
            try:
                with self._send_lock:
                    self.requests.send((rid, op, meta))
            except (OSError, ValueError):
                with self._lock:
                    self._pending.pop(rid, None)
                raise ServiceError("the inference service is gone") from None
            try:
                return fut.result(timeout=timeout)
            except TimeoutError:
                with self._lock:
                    self._pending.pop(rid, None)
                raise ServiceError(f"no answer from the inference service in {timeout:.0f} s") from None
        finally:
            if slot is not None:
                ring.release(slot)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self.images.close()
        self.chips.close()


class RemoteDescriptor:
    """``compute(chips) -> (N, 128)`` on the service's descriptor network."""

    def __init__(self, client: ServiceClient):
        self.client = client

    def compute(self, chips: np.ndarray, flip: bool = False, jitter: int = 0) -> np.ndarray:
        chips = np.asarray(chips, np.uint8)
        if len(chips) == 0:
            return np.empty((0, 128), np.float32)
        # flip and jitter are the service engine's own (the parent's engine); not sent
        return np.asarray(self.client.call("embed", self.client.chips, chips), np.float32)


class RemoteDetector:
    """``detect(image, ...)`` on the service's detector (any detector: arguments are passed on).

    ``attributes`` copies what the scheduler reads of the real detector (``accepts_grey``...).
    ``detect_batch(images, ...)``: several images (a frame's windows around tracks) in one
    request and one slot; the service answers each as ``detect`` would (its detector's
    ``detect_batch``, batched there with the other cameras' images).
    """

    remote = True  # a camera worker uses this detector rather than make one of its own

    def __init__(self, client: ServiceClient, attributes: dict | None = None):
        self.client = client
        for k, v in (attributes or {}).items():
            setattr(self, k, v)

    def detect(self, image: np.ndarray, *args, **kwargs):
        meta = {"args": args, "kwargs": kwargs} if (args or kwargs) else {}
        return self.client.call("detect", self.client.images, image, **meta)

    __call__ = detect

    def detect_batch(self, images, *args, **kwargs) -> list:
        if not len(images):
            return []
        flat, parts = pack(images)
        meta = {"args": args, "kwargs": kwargs} if (args or kwargs) else {}
        return self.client.call("detect_batch", self.client.images, flat, parts=parts, **meta)


def detector_attributes(detector) -> dict:
    """Plain attributes of a detector worth mirroring in a camera process."""
    out = {}
    for k in ("accepts_grey", "upsample", "min_face", "runtime", "name"):
        v = getattr(detector, k, None)
        if isinstance(v, (bool, int, float, str)) and v is not None:
            out[k] = v
    return out
