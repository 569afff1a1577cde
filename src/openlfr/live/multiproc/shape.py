"""Which shape a live run takes: threads in one process, or camera processes and a service.

``RunConfig.shape``: ``threads`` (today's ``LiveRunner``: one process, a thread per camera),
``processes`` (``ProcessRunner``: camera processes around one inference service) or ``auto``:

- one camera: threads (a laptop's webcam keeps the simple path);
- fewer than 4 cores: threads (processes would only compete for them);
- a CUDA GPU and 2 or more cameras: processes (the GPU is fed by many cameras; one GIL
  cannot feed it: bench/RESULTS.md);
- no GPU: processes from 4 cameras up, each camera's HOG detection then runs on its own core.
"""

from __future__ import annotations

import os


def choose_shape(shape: str, n_cameras: int, cores: int | None = None, cuda: bool | None = None) -> str:
    if shape in ("threads", "processes"):
        return shape
    if shape != "auto":
        raise ValueError(f"unknown run shape {shape!r} (auto, threads, processes)")
    cores = (os.cpu_count() or 1) if cores is None else cores
    if n_cameras <= 1 or cores < 4:
        return "threads"
    if cuda is None:
        from ...engine.runtime import cuda_available

        cuda = cuda_available()
    if cuda:
        return "processes"
    return "processes" if n_cameras >= 4 else "threads"


def process_count(n_cameras: int, wanted: int = 0, cores: int | None = None) -> int:
    """Camera processes for ``n_cameras``: ``wanted`` if given, else one per core but one (the
    parent runs the service), at most one per camera."""
    if wanted > 0:
        return max(1, min(wanted, n_cameras))
    cores = (os.cpu_count() or 1) if cores is None else cores
    return max(1, min(n_cameras, cores - 1 if cores > 2 else cores))


def make_runner(cfg, **kwargs):
    """A ``LiveRunner`` or a ``ProcessRunner`` for ``cfg`` (same constructor, events, summary)."""
    shape = choose_shape(getattr(cfg, "shape", "auto"), len(cfg.sources))
    if shape == "processes":
        from .runner import ProcessRunner

        return ProcessRunner(cfg, **kwargs)
    from ..runner import LiveRunner

    return LiveRunner(cfg, **kwargs)
