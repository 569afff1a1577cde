"""Descriptor throughput: dlib's ``compute_face_descriptor`` against our runtime, same chips,
same process."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np


def real_chips(images: list[Path] | None = None, limit: int = 64) -> np.ndarray:
    """Aligned 150x150 chips of real faces: from ``images`` or from the bundled sample photos."""
    from ..engine.images import load_image
    from ..engine.pipeline import FaceEngine
    from ..engine.samples import SAMPLES

    engine = FaceEngine(detector="hog", upsample=1)
    sources = [load_image(p) for p in images] if images else [f() for f in SAMPLES.values()]
    chips = [f.chip for img in sources for f in engine.analyze(img, descriptors=False)]
    if not chips:
        raise ValueError("no face found in the benchmark images")
    reps = -(-limit // len(chips))
    return np.stack((chips * reps)[:limit])


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _rate(fn, n_faces: int, min_seconds: float) -> float:
    fn()  # warm-up
    done, start = 0, time.perf_counter()
    while True:
        fn()
        done += n_faces
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def bench_embed(
    chips: np.ndarray,
    dlib_faces: int = 24,
    seconds: float = 3.0,
    runtimes: tuple[str, ...] = ("onnx",),
    precision: str = "fp32",
    batch_size: int = 32,
) -> dict:
    """Faces/s of dlib (one chip per call, as it runs) and of our runtime(s) (batched)."""
    import dlib

    from ..engine.descriptor import make_descriptor
    from ..engine.models import DESCRIPTOR, model_path

    fr = dlib.face_recognition_model_v1(str(model_path(DESCRIPTOR)))
    sub = chips[:dlib_faces]
    dlib_rate = _rate(lambda: [fr.compute_face_descriptor(c) for c in sub], len(sub), seconds)
    dlib_batch_rate = _rate(lambda: fr.compute_face_descriptor(list(sub)), len(sub), seconds)
    ref = np.array([np.asarray(fr.compute_face_descriptor(c)) for c in sub], np.float32)
    result = {
        "machine": f"{cpu_name()}, {os.cpu_count()} logical CPUs",
        "chips": int(len(chips)),
        "dlib_faces_per_s": round(dlib_rate, 2),
        "dlib_batched_faces_per_s": round(dlib_batch_rate, 2),
    }
    for rt in runtimes:
        model = make_descriptor(rt, precision)
        model.batch_size = batch_size
        rate = _rate(lambda: model.compute(chips), len(chips), seconds)
        err = float(np.abs(model.compute(sub) - ref).max())
        key = "" if rt == runtimes[0] else f"{rt}_"
        result.update(
            {
                f"{key}runtime": f"{model.runtime} {model.precision}",
                f"{key}faces_per_s": round(rate, 2),
                f"{key}ratio": round(rate / dlib_rate, 2),
                f"{key}max_abs_diff_vs_dlib": err,
            }
        )
    return result
