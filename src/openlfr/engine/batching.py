"""Gathering requests from a queue into one batch (shared embedder, batched detector)."""

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
