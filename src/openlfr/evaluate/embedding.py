"""Image files to descriptors for evaluation: one face per image, a fallback policy, a cache.

Evaluation sets such as LFW hold one subject per image, centred, often with other faces around.
For each image, with the default detector ``hog``:

1. HOG detector, upsample 1; of the faces found whose box covers the image centre, the one whose
   box centre is closest to the image centre is the subject (method ``hog``);
2. if none: HOG again at upsample 2 (``hog_upsample2``);
3. if none: the CNN (MMOD) detector (``cnn``);
4. if none covers the centre but some stage found faces: the face closest to the centre from the
   first stage that found any (``off_centre``; e.g. a subject not centred in the image);
5. if no stage found a face: a fixed central box, (70, 70, 180, 180) on LFW's 250x250, scaled to
   the image (``central_box``), which still goes through the landmarks and the aligned chip.

With ``detector="cnn"`` the chain is the MMOD CNN at upsample 0 (``cnn_upsample0``), then at
upsample 1 (``cnn``), then HOG at upsample 1 (``hog``), then steps 4 and 5. With
``detector="retina"``: RetinaFace (``retina``), then on the image enlarged 2x
(``retina_upsample1``), then the CNN at upsample 1, then steps 4 and 5; a face RetinaFace found
is aligned from its own 5 landmarks (``retina.dlib_points``), as ``FaceEngine`` does (the chip
cut from the image as it is: LFW's faces are not small). The CNN's boxes are
a better start for the 5-point landmarks (on lfw-dev: 99.23% with flip against 99.13% for HOG
with flip and sub-pixel landmarks; docs/evaluation.md).

Each image's outcome (its ``method``) is kept so reports can say how many faces were not found by
the first detector and what was done with them.

The chip is cut from the 5 landmarks rounded to whole pixels, as dlib and ``FaceEngine`` do, or,
with ``subpixel``, from the landmarks before that rounding (a finer alignment).

Embedding thousands of images takes minutes, so results are cached in
``cache_dir()/eval-*.npz`` in two layers, each entry keyed by the image's resolved path, size and
modification time: the located faces (method, box, sub-pixel landmarks; keyed by the policy and
the model files) and the descriptors (keyed as well by flip, jitter and subpixel). A run with
other descriptor options re-uses the located faces and only recomputes chips and descriptors.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

from ..engine.cache import cache_dir
from ..engine.detection import Detection
from ..engine.images import ImageError, load_image

POLICY_VERSION = 3
METHODS = ("hog", "hog_upsample2", "cnn", "off_centre", "central_box", "cnn_upsample0", "retina",
           "retina_upsample1")  # indices stored in caches
# "cnn" is the MMOD detector at upsample 1 (the default chain's last resort), "cnn_upsample0" at 0.
CHAINS = {"hog": ("hog", "hog_upsample2", "cnn"), "cnn": ("cnn_upsample0", "cnn", "hog"),
          "retina": ("retina", "retina_upsample1", "cnn")}


def fallbacks_of(detector: str) -> tuple[str, ...]:
    """The methods of ``detector``'s chain after its first, then ``off_centre`` and ``central_box``."""
    return CHAINS[detector][1:] + ("off_centre", "central_box")


CENTRAL_BOX_250 = (70, 70, 180, 180)
BATCH = 32  # images per descriptor batch


@dataclass(frozen=True)
class EmbedOptions:
    flip: bool = False
    jitter: int = 0
    subpixel: bool = False  # chips from the landmarks before dlib rounds them to whole pixels
    detector: str = "hog"  # the first detector of the chain: "hog" (upsample 1), "cnn" (MMOD, upsample 0) or "retina"

    def __post_init__(self):
        if self.detector not in CHAINS:
            raise ValueError(f"detector must be one of {', '.join(CHAINS)}, not {self.detector!r}")

    def as_dict(self) -> dict:
        return {
            "detector": self.detector,
            "upsample": 1 if self.detector == "hog" else 0,
            "flip": bool(self.flip and not self.jitter),
            "jitter": self.jitter,
            "subpixel": self.subpixel,
        }

    def describe(self) -> str:
        parts = [{"hog": "HOG (upsample 1)", "cnn": "CNN (MMOD, upsample 0)",
                  "retina": "RetinaFace (dlib-style boxes)"}[self.detector] + ", nearest-centre face"]
        if self.subpixel:
            parts.append("sub-pixel landmarks")
        if self.jitter:
            parts.append(f"jitter {self.jitter} (random crops and mirroring; seeded per image)")
        elif self.flip:
            parts.append("flip (descriptor averaged with the mirrored chip)")
        return ", ".join(parts)


@dataclass
class Embedded:
    """Descriptors of the images that could be read, in input order (``paths``)."""

    paths: list[Path]
    descriptors: np.ndarray  # (N, 128) float32
    methods: list[str]  # one of METHODS per image
    errors: dict[Path, str] = field(default_factory=dict)  # unreadable images, not in ``paths``
    stats: dict = field(default_factory=dict)  # cache hits and timing
    detector: str = "hog"  # EmbedOptions.detector: which chain located the faces

    def index(self) -> dict[Path, int]:
        return {p: i for i, p in enumerate(self.paths)}

    @classmethod
    def gathered(cls, todo: list[Path], results: dict, errors: dict, stats: dict, detector: str) -> "Embedded":
        """From ``results`` ({path: (method, descriptor)}), in the order of ``todo``; paths without a result left out."""
        done = [p for p in todo if p in results]
        desc = np.stack([results[p][1] for p in done]).astype(np.float32) if done else np.zeros((0, 128), np.float32)
        return cls(done, desc, [results[p][0] for p in done], errors, stats, detector)

    def fallbacks(self, root: Path | None = None) -> dict:
        """Images where the first detector (HOG at upsample 1 by default) found no face covering the
        image centre, and what was done: ``{"hog_upsample2": n, "cnn": n, "off_centre": n,
        "central_box": n, "images": [{"image", "method"}]}`` (with the CNN first: ``cnn`` and
        ``hog`` in place of ``hog_upsample2`` and ``cnn``)."""
        first = CHAINS[self.detector][0]
        out: dict = {m: 0 for m in fallbacks_of(self.detector)}
        images = []
        for p, m in zip(self.paths, self.methods):
            if m == first:
                continue
            out[m] += 1
            images.append({"image": _rel(p, root), "method": m})
        out["images"] = images
        return out


class _Located(NamedTuple):
    method: str
    box: tuple[int, int, int, int]
    landmarks: np.ndarray  # (5, 2) float64, sub-pixel (dlib's are these rounded: floor(x + 0.5))

    def chip_landmarks(self, subpixel: bool) -> np.ndarray:
        return self.landmarks if subpixel else np.floor(self.landmarks + 0.5)


def nearest_centre(detections: list, width: int, height: int, covering: bool = False):
    """The detection whose box centre is closest to the image centre (higher score on a tie).

    ``covering=True`` considers only boxes that contain the image centre (``None`` if there is none).
    """
    cx, cy = (width - 1) / 2, (height - 1) / 2
    if covering:
        detections = [d for d in detections if d.box[0] <= cx <= d.box[2] and d.box[1] <= cy <= d.box[3]]
        if not detections:
            return None

    def key(d):
        l, t, r, b = d.box
        return ((l + r) / 2 - cx) ** 2 + ((t + b) / 2 - cy) ** 2, -float(d.score)

    return min(detections, key=key)


def central_box(width: int, height: int) -> tuple[int, int, int, int]:
    sx, sy = width / 250, height / 250
    l, t, r, b = CENTRAL_BOX_250
    return round(l * sx), round(t * sy), round(r * sx), round(b * sy)


_DETECTOR_ARGS = {"hog": ("hog", 1), "hog_upsample2": ("hog", 2), "cnn": ("cnn", 1), "cnn_upsample0": ("cnn", 0),
                  "retina": ("retina", 0), "retina_upsample1": ("retina", 1)}


class FaceLocator:
    """The fallback policy above; detectors beyond the first are made when first needed."""

    def __init__(self, detector: str = "hog"):
        from ..engine.pipeline import FaceEngine

        self.chain = CHAINS[detector]
        kind, up = _DETECTOR_ARGS[self.chain[0]]
        self.engine = FaceEngine(detector=kind, upsample=up, second="none")  # landmarks and descriptor models (SFace: evaluate/second.py)
        self._detectors: dict[str, object] = {self.chain[0]: self.engine.detector}

    def _detector(self, method: str):
        if method not in self._detectors:
            from ..engine.detection import make_detector

            kind, up = _DETECTOR_ARGS[method]
            self._detectors[method] = make_detector(kind, upsample=up)
        return self._detectors[method]

    def locate(self, rgb: np.ndarray) -> _Located:
        h, w = rgb.shape[:2]
        first_found = None
        for method in self.chain:
            found = self._detector(method).detect(rgb)
            det = nearest_centre(found, w, h, covering=True) if found else None
            if det is not None:
                break
            if found and first_found is None:
                first_found = found
        else:
            if first_found is not None:
                method, det = "off_centre", nearest_centre(first_found, w, h)
            else:
                method, det = "central_box", Detection(central_box(w, h), 0.0)
        if det.landmarks is not None:  # RetinaFace: as FaceEngine.landmarks_and_chip aligns it
            from ..engine.retina import dlib_points, fused_points

            if self.engine.landmarks == "fused":
                pts = fused_points(det.landmarks, self.engine.shape_predictor.predict_subpixel(rgb, det.box))
            else:
                pts = dlib_points(det.landmarks)
        else:
            pts = self.engine.shape_predictor.predict_subpixel(rgb, det.box)
        return _Located(method, tuple(int(v) for v in det.box), np.asarray(pts, np.float64))


# --------------------------------------------------------------------------- cache


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _models_tag() -> str:
    from ..engine.models import DESCRIPTOR, MMOD, MODELS, SHAPE5

    return "-".join(MODELS[m].sha256[:8] for m in (SHAPE5, MMOD, DESCRIPTOR))


class _Store:
    """A dict of key -> fixed-size row, kept in one ``.npz`` (merged on save)."""

    def __init__(self, name: str, width: int, dtype=np.float32, enabled: bool = True):
        self.path = cache_dir() / f"eval-{name}.npz"
        self.width = width
        self.dtype = np.dtype(dtype)
        self.enabled = enabled
        self.rows: dict[str, np.ndarray] = self._read() if enabled else {}
        self.dirty = 0

    def _read(self) -> dict[str, np.ndarray]:
        try:
            with np.load(self.path, allow_pickle=False) as z:
                keys, values = z["keys"], z["values"]
            if values.ndim != 2 or values.shape[1] != self.width or len(keys) != len(values) or values.dtype != self.dtype:
                return {}
            return {str(k): v for k, v in zip(keys, values)}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return {}  # a damaged cache is rebuilt

    def get(self, key: str) -> np.ndarray | None:
        return self.rows.get(key)

    def put(self, key: str, row: np.ndarray) -> None:
        self.rows[key] = np.asarray(row, self.dtype).reshape(self.width)
        self.dirty += 1

    def save(self) -> None:
        if not (self.enabled and self.dirty):
            return
        merged = {**self._read(), **self.rows}  # another run may have added entries meanwhile
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".npz")
            with os.fdopen(fd, "wb") as f:
                np.savez(
                    f,
                    keys=np.array(list(merged), dtype=str),
                    values=np.stack(list(merged.values())) if merged else np.zeros((0, self.width), self.dtype),
                )
            os.replace(tmp, self.path)
            self.dirty = 0
        except OSError:
            pass  # read-only cache dir: works, just slower next time


def _stores(options: EmbedOptions, enabled: bool) -> tuple[_Store, _Store]:
    base = {"policy": POLICY_VERSION, "models": _models_tag()}
    if options.detector != "hog":  # (the default chain keeps the keys of the caches made before the option)
        base["detector"] = options.detector
    if options.detector == "retina":  # its weights, box mapping and landmark template
        from ..engine import retina, retina_weights

        base["retina"] = [retina_weights.ONNX_SHA256[:12], retina.BOX_SIDE, retina.BOX_SHIFT,
                          retina.POINTS_TEMPLATE.round(4).tolist(), "fused"]
    face_id = hashlib.sha256(json.dumps(base, sort_keys=True).encode()).hexdigest()[:16]
    desc = {
        **base,
        "flip": bool(options.flip and not options.jitter),
        "jitter": int(options.jitter),
        "subpixel": bool(options.subpixel),
    }
    desc_id = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]
    # faces row: method index, box (4), sub-pixel landmarks (10); descriptors row: 128 floats
    return (
        _Store(f"faces-{face_id}", 15, np.float64, enabled),
        _Store(f"descriptors-{desc_id}", 128, np.float32, enabled),
    )


def _pack(loc: _Located) -> np.ndarray:
    return np.concatenate([[METHODS.index(loc.method)], loc.box, loc.landmarks.reshape(-1)])


def _unpack(row: np.ndarray) -> _Located:
    return _Located(METHODS[int(row[0])], tuple(int(v) for v in row[1:5]), row[5:].reshape(5, 2).copy())


# --------------------------------------------------------------------------- embedding


def embed_images(
    paths: Iterable[str | Path],
    options: EmbedOptions = EmbedOptions(),
    *,
    use_cache: bool = True,
    progress: bool = True,
    batch: int = BATCH,
) -> Embedded:
    """One descriptor per image (see the module's policy); unreadable images go to ``errors``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..engine.chips import face_chip

    todo = list(dict.fromkeys(Path(p) for p in paths))
    faces_store, desc_store = _stores(options, use_cache)
    locator: FaceLocator | None = None
    errors: dict[Path, str] = {}
    keys: dict[Path, str] = {}
    results: dict[Path, tuple[str, np.ndarray]] = {}
    pending: list[tuple[Path, str, np.ndarray]] = []  # path, method, chip
    stats = {"images": len(todo), "cached_descriptors": 0, "cached_faces": 0, "located": 0}
    t0 = time.perf_counter()
    last_save = time.monotonic()

    def flush(bar, task):
        if not pending:
            return
        engine = locator.engine
        chips = np.stack([c for _, _, c in pending])
        if options.jitter:
            d = np.stack(
                [
                    engine.descriptor.compute(c, jitter=options.jitter, seed=zlib.crc32(p.name.encode()))[0]
                    for (p, _, _), c in zip(pending, chips)
                ]
            )
        else:
            d = engine.descriptor.compute(chips, flip=options.flip)
        for (p, m, _), v in zip(pending, d):
            desc_store.put(keys[p], v)
            results[p] = (m, v)
        bar.advance(task, len(pending))
        pending.clear()

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), disable=not progress, transient=False) as bar:
        task = bar.add_task("embedding images", total=len(todo))
        for p in todo:
            try:
                keys[p] = key = _file_key(p)
            except OSError as e:
                errors[p] = f"{p}: cannot read ({e.strerror or e})"
                bar.advance(task)
                continue
            row = faces_store.get(key)
            d = desc_store.get(key)
            if row is not None and d is not None:
                results[p] = (_unpack(row).method, d)
                stats["cached_descriptors"] += 1
                bar.advance(task)
                continue
            try:
                rgb = load_image(p)
            except ImageError as e:
                errors[p] = str(e)
                bar.advance(task)
                continue
            if locator is None:
                locator = FaceLocator(options.detector)
            if row is None:
                loc = locator.locate(rgb)
                faces_store.put(key, _pack(loc))
                stats["located"] += 1
            else:
                loc = _unpack(row)
                stats["cached_faces"] += 1
            pending.append((p, loc.method, face_chip(rgb, loc.chip_landmarks(options.subpixel))))
            if len(pending) >= batch:
                flush(bar, task)
                if time.monotonic() - last_save > 60:
                    faces_store.save()
                    desc_store.save()
                    last_save = time.monotonic()
        flush(bar, task)
    faces_store.save()
    desc_store.save()
    stats["seconds"] = round(time.perf_counter() - t0, 1)
    return Embedded.gathered(todo, results, errors, stats, options.detector)


def _rel(p: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(p.relative_to(root))
        except ValueError:
            pass
    return str(p)


def face_qualities(paths: Iterable[str | Path], options: EmbedOptions = EmbedOptions()) -> dict[Path, tuple[float, float, float]]:
    """``{path: (face box width, chip sharpness, yaw)}`` of the faces ``embed_images`` located (its
    cache must hold them): what the scoring model's quality bands read. The chip is cut again from
    the image (no network pass). Images whose face is not in the cache are left out."""
    from ..engine.chips import face_chip
    from ..engine.quality import pose_from_landmarks, sharpness_of

    faces_store, _ = _stores(options, True)
    out: dict[Path, tuple[float, float, float]] = {}
    for p in (Path(x) for x in paths):
        try:
            row = faces_store.get(_file_key(p))
            if row is None:
                continue
            loc = _unpack(row)
            chip = face_chip(load_image(p), loc.chip_landmarks(options.subpixel))
        except (OSError, ImageError):
            continue
        v = sharpness_of(chip)
        _, yaw, _ = pose_from_landmarks(loc.landmarks)
        out[p] = (float(loc.box[2] - loc.box[0]), v / (v + 100.0), float(yaw))
    return out
