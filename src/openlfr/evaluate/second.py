"""A second, independent descriptor for evaluation: SFace features of image files, cached.

For each image (one subject per image, centred, as in LFW), the face is found by RetinaFace:

1. RetinaFace; of the faces whose box covers the image centre, the one nearest the centre
   (method ``retina``);
2. if none: RetinaFace on the image enlarged 2x (``retina_upsample1``);
3. if none covers the centre but some were found: the one nearest the centre from the first
   stage that found any (``off_centre``);
4. if no face was found: RetinaFace again with its score threshold lowered to 0.05, nearest the
   centre (``low_score``); if still none, a central box (``central_box``, 70..180 on LFW's 250x250)
   with the 5 points of SFace's alignment template scaled into it.

The face is aligned from RetinaFace's own 5 landmarks (``SFaceModel.align``) and described by
SFace (``engine/sface.py``). Features are cached in ``cache_dir()/eval-sface-*.npz``, keyed by
the image's resolved path, size and modification time, under a name made from the SFace and
RetinaFace weights' sha256, this policy's version and the flip option.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from ..engine.detection import Detection
from ..engine.images import ImageError, load_image
from .embedding import BATCH, Embedded, _file_key, _Store, central_box, nearest_centre

POLICY_VERSION = 1
METHODS = ("retina", "retina_upsample1", "off_centre", "low_score", "central_box")
LOW_SCORE = 0.05
# SFace's 112x112 alignment template (OpenCV's FaceRecognizerSF), as fractions of the crop
TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                         [70.7299, 92.2041]]) / 112.0


class SFaceLocator:
    """The policy above: RetinaFace detections with their 5 landmarks."""

    def __init__(self):
        from ..engine.detection import make_detector

        self.detectors = {"retina": make_detector("retina", upsample=0, runtime="onnx"),
                          "retina_upsample1": make_detector("retina", upsample=1, runtime="onnx")}

    def locate(self, rgb: np.ndarray) -> tuple[str, Detection]:
        h, w = rgb.shape[:2]
        first_found = None
        for method, detector in self.detectors.items():
            found = detector.detect(rgb)
            det = nearest_centre(found, w, h, covering=True) if found else None
            if det is not None:
                return method, det
            if found and first_found is None:
                first_found = found
        if first_found is not None:
            return "off_centre", nearest_centre(first_found, w, h)
        found = self.detectors["retina"].detect(rgb, threshold=LOW_SCORE)
        if found:
            return "low_score", nearest_centre(found, w, h)
        l, t, r, b = central_box(w, h)
        pts = np.array([l, t]) + TEMPLATE_112 * np.array([r - l + 1, b - t + 1])
        return "central_box", Detection((l, t, r, b), 0.0, landmarks=pts)


def _store(flip: bool, enabled: bool) -> _Store:
    from ..engine import retina_weights, sface

    key = {"policy": POLICY_VERSION, "sface": sface.FILE_SHA256[:16], "retina": retina_weights.ONNX_SHA256[:16],
           "low_score": LOW_SCORE, "flip": bool(flip)}
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return _Store(f"sface-{name}", 1 + 128, np.float32, enabled)  # method index, then the feature


def sface_features(paths: Iterable[str | Path], *, flip: bool = False, use_cache: bool = True,
                   progress: bool = True, batch: int = BATCH) -> Embedded:
    """One SFace feature (unit length) per readable image, in input order; ``methods`` says how its
    face was found (see the module's policy); unreadable images go to ``errors``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..engine.sface import SFaceModel

    todo = list(dict.fromkeys(Path(p) for p in paths))
    store = _store(flip, use_cache)
    model: SFaceModel | None = None
    locator: SFaceLocator | None = None
    errors: dict[Path, str] = {}
    results: dict[Path, tuple[str, np.ndarray]] = {}
    pending: list[tuple[Path, str, str, np.ndarray]] = []  # path, key, method, crop
    stats = {"images": len(todo), "cached_descriptors": 0, "located": 0, "flip": bool(flip)}
    t0 = time.perf_counter()

    def flush():
        if not pending:
            return
        feats = model.compute(np.stack([c for *_, c in pending]), flip=flip)
        for (p, key, m, _), f in zip(pending, feats):
            store.put(key, np.concatenate([[METHODS.index(m)], f]))
            results[p] = (m, f)
        pending.clear()

    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress, transient=False) as bar:
        task = bar.add_task("SFace features", total=len(todo))
        for p in todo:
            bar.advance(task)
            try:
                key = _file_key(p)
            except OSError as e:
                errors[p] = f"{p}: cannot read ({e.strerror or e})"
                continue
            row = store.get(key)
            if row is not None:
                results[p] = (METHODS[int(row[0])], row[1:].astype(np.float32))
                stats["cached_descriptors"] += 1
                continue
            try:
                rgb = load_image(p)
            except ImageError as e:
                errors[p] = str(e)
                continue
            if model is None:
                model, locator = SFaceModel(), SFaceLocator()
            method, det = locator.locate(rgb)
            stats["located"] += 1
            pending.append((p, key, method, model.align(rgb, det)))
            if len(pending) >= batch:
                flush()
        flush()
    store.save()
    stats["seconds"] = round(time.perf_counter() - t0, 1)
    return Embedded.gathered(todo, results, errors, stats, "retina")


def method_counts(emb: Embedded) -> dict:
    return {m: sum(x == m for x in emb.methods) for m in METHODS}
