"""One descriptor model shared by every camera, fed in batches.

Camera workers ``submit`` the chips of their best shots and wait on the returned future; a
single thread collects requests from all cameras for up to ``wait_ms`` (or until ``batch``
chips are waiting) and runs them through the descriptor network in one call. onnxruntime
releases the GIL while it runs, so decoding and detection of the other cameras go on meanwhile.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future

from ..engine.batching import gather

import numpy as np

log = logging.getLogger(__name__)


class SharedEmbedder:
    def __init__(self, compute, batch: int = 32, wait_ms: float = 2.0, second=None):
        """``compute(chips (N, 150, 150, 3) uint8) -> (N, 128) float32``, e.g. ``engine_compute(engine)``;
        ``second(crops (N, 112, 112, 3) uint8) -> (N, 128) float32``, e.g. ``second_compute(model)``."""
        self.compute = compute
        self.second = second
        self.second_faces = 0
        self.batch = batch
        self.wait_s = wait_ms / 1000.0
        self._q: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="embedder", daemon=True)
        self.batches = 0
        self.faces = 0
        self.busy_s = 0.0
        self.max_batch = 0

    def start(self) -> "SharedEmbedder":
        self._thread.start()
        return self

    def submit(self, chips: np.ndarray) -> Future:
        """A future of the chips' (N, 128) descriptors."""
        return self._submit(chips, None, False)

    def submit_pair(self, chips: np.ndarray, crops: list | None) -> Future:
        """A future of ``(descriptors (N, 128), second features (N, 128) or None)``: the second model's
        features of ``crops`` (NaN rows where a crop is None; None without a second model or crops)."""
        return self._submit(chips, crops, True)

    def _submit(self, chips, crops, pair: bool) -> Future:
        fut: Future = Future()
        chips = np.asarray(chips)
        if crops is not None and (self.second is None or all(c is None for c in crops)):
            crops = None
        if crops is not None and len(crops) != len(chips):
            raise ValueError(f"{len(chips)} chips but {len(crops)} second crops")
        if len(chips) == 0:
            empty = np.empty((0, 128), np.float32)
            fut.set_result((empty, None) if pair else empty)
            return fut
        if self._stop.is_set():
            fut.set_exception(RuntimeError("embedder stopped"))
            return fut
        self._q.put((chips, fut, crops, pair))
        return fut

    def embed(self, chips: np.ndarray, timeout: float | None = 60.0) -> np.ndarray:
        return self.submit(chips).result(timeout)

    def _loop(self) -> None:
        while True:
            try:
                item = self._q.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if item is None:
                return
            reqs, stop = gather(self._q, item, self.batch, self.wait_s, size=lambda r: len(r[0]))
            if stop:
                self._stop.set()
            self._run(reqs)

    def _run(self, reqs) -> None:
        try:
            t0 = time.perf_counter()
            chips = np.concatenate([r[0] for r in reqs]) if len(reqs) > 1 else reqs[0][0]
            desc = np.asarray(self.compute(chips), np.float32)
            crops = [(j, c) for j, c in enumerate(c for r in reqs for c in (r[2] if r[2] is not None else [None] * len(r[0])))
                     if c is not None]
            second = None
            if crops:
                second = np.full((len(chips), 128), np.nan, np.float32)
                second[[j for j, _ in crops]] = np.asarray(self.second(np.stack([c for _, c in crops])), np.float32)
                self.second_faces += len(crops)
            self.busy_s += time.perf_counter() - t0
            self.batches += 1
            self.faces += len(chips)
            self.max_batch = max(self.max_batch, len(chips))
        except Exception as e:  # hand the error to every waiting camera
            log.error("embedding failed: %s", type(e).__name__)
            for r in reqs:
                r[1].set_exception(e)
            return
        i = 0
        for c, fut, cr, pair in reqs:
            d = desc[i : i + len(c)]
            fut.set_result((d, None if second is None or cr is None else second[i : i + len(c)]) if pair else d)
            i += len(c)

    def stop(self) -> None:
        self._stop.set()
        self._q.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        while True:  # fail whatever is left
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[1].set_exception(RuntimeError("embedder stopped"))


def second_compute(model):
    """The second model's features of plain (not flipped) crops, as the fused table was calibrated."""

    def compute(crops: np.ndarray) -> np.ndarray:
        return model.compute(crops, flip=False)

    return compute


def engine_compute(engine, flip: bool | None = None):
    """The FaceEngine's descriptor with its flip/jitter options (``flip`` overrides the engine's),
    as a ``compute`` function."""
    flip = engine.flip if flip is None else flip

    def compute(chips: np.ndarray) -> np.ndarray:
        return engine.descriptor.compute(chips, flip=flip, jitter=engine.jitter)

    return compute
