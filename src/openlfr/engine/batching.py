"""Gathering requests from a queue into one batch: the shared embedder's chips, and the images of
many callers for one detector (:class:`BatchingDetector`)."""

from __future__ import annotations

import queue
import time
from typing import Any, Callable


def gather(q: queue.Queue, first: Any, limit: int, wait_s: float, size: Callable[[Any], int] = lambda _: 1) -> tuple[list, bool]:
    """Start a batch with ``first`` and add queued items until their total ``size`` reaches
    ``limit`` or ``wait_s`` has passed. Returns (items, stop) where ``stop`` is True when the
    stop marker ``None`` was taken from the queue."""
    items, n = [first], size(first)
    deadline = time.monotonic() + wait_s
    while n < limit:
        left = deadline - time.monotonic()
        try:
            nxt = q.get(timeout=left) if left > 0 else q.get_nowait()
        except queue.Empty:
            break
        if nxt is None:
            return items, True
        items.append(nxt)
        n += size(nxt)
    return items, False


class BatchingDetector:
    """One detector shared by many threads (camera threads, or the inference service's pool that
    answers the camera processes), their images batched into the detector's ``detect_batch``.

    A drop-in ``detect(image, *args)`` for the live run's detection scheduler: each call hands
    its image to one thread, which collects the requests of every caller for up to ``wait_ms``
    (or ``max_batch`` images) and runs them with ``detector.detect_batch``, one call per set of
    extra arguments (RetinaFace's threshold: full scans and the windows around tracks). The
    detector batches what it can (RetinaFace: the images of one shape bucket; the MMOD CNN: the
    frames of one size), as the shared embedder does for descriptors. On a GPU this replaces
    many small launches by few large ones. Results are the detector's own, image by image:
    ``detect_batch`` of RetinaFace and of the torch MMOD detector gives each image what
    ``detect`` gives it, whatever else is in the batch. ``detect_batch(images, *args)`` queues
    the images one by one, so they batch with other callers' too. Other attributes
    (``accepts_grey``, ``upsample``...) are the detector's.
    """

    def __init__(self, detector, max_batch: int = 8, wait_ms: float = 2.0):
        import threading

        self.detector = detector
        self.max_batch, self.wait_s = int(max_batch), wait_ms / 1000.0
        self._q: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self.batches = 0  # detect_batch calls made
        self.images = 0
        self.largest = 0  # most images in one call
        self.cpu_s = 0.0  # thread CPU inside the detector (its callers only wait)
        self._thread = threading.Thread(target=self._loop, name="detector-batcher", daemon=True)
        self._thread.start()

    def __getattr__(self, name: str):  # the detector's attributes (runtime, accepts_grey, threshold...)
        if name.startswith("_") or name == "detector":
            raise AttributeError(name)
        return getattr(self.detector, name)

    def _submit(self, image, args: tuple, kwargs: dict):
        from concurrent.futures import Future

        if self._stop.is_set():
            raise RuntimeError("detector stopped")
        fut: Future = Future()
        self._q.put((image, args, kwargs, fut))
        return fut

    def detect(self, image, *args, **kwargs):
        return self._submit(image, args, kwargs).result()

    __call__ = detect

    def detect_batch(self, images, *args, **kwargs) -> list:
        futs = [self._submit(image, args, kwargs) for image in images]
        return [f.result() for f in futs]

    @staticmethod
    def _key(args: tuple, kwargs: dict):
        key = (args, tuple(sorted(kwargs.items())))
        try:
            hash(key)
        except TypeError:
            return repr(key)
        return key

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            if first is None:
                break
            items, stop = gather(self._q, first, self.max_batch, self.wait_s)
            if stop:
                self._stop.set()
            groups: dict = {}
            for item in items:
                groups.setdefault(self._key(item[1], item[2]), []).append(item)
            for group in groups.values():
                _, args, kwargs, _ = group[0]
                c0 = time.thread_time()
                try:
                    results = self.detector.detect_batch([img for img, *_ in group], *args, **kwargs)
                except Exception as e:  # noqa: BLE001 - every waiting caller gets the error
                    for *_, fut in group:
                        fut.set_exception(e)
                    continue
                finally:
                    self.cpu_s += time.thread_time() - c0
                self.batches += 1
                self.images += len(group)
                self.largest = max(self.largest, len(group))
                for (*_, fut), r in zip(group, results):
                    fut.set_result(r)

    def close(self) -> None:
        self._stop.set()
        self._q.put(None)
        self._thread.join(timeout=5)
        while not self._q.empty():
            item = self._q.get_nowait()
            if item is not None:
                item[-1].set_exception(RuntimeError("detector stopped"))
