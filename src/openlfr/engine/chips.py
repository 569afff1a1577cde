"""Aligned face chips, equal to ``dlib.get_face_chip`` / ``dlib.get_face_chips``.

``get_face_chip_details`` fits dlib's 5-point template (placed at ``(padding + p) / (1 + 2
padding) * size``) to the landmarks by Umeyama, giving an angle and a scale; the chip rectangle
is centred on the image of chip point (size/2, size/2). ``extract_image_chips`` then crops a
grown bounding box, shrinks it with dlib's integer [1 4 6 4 1]/256 2x pyramid while the
(pyramid-mapped) rectangle is larger than the chip, and samples it bilinearly (truncated to
uint8, samples whose 2x2 neighbourhood leaves the image are 0) through an affine map fitted to
three chip corners. Every double is computed in dlib's operation order (see
:mod:`openlfr.engine.dlib_geometry`), so chips match dlib pixel for pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import dlib_geometry as geo

# dlib's 5-point template (get_face_chip_details in dlib/image_transforms/interpolation.h).
TEMPLATE_5 = (
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
)


@dataclass(frozen=True)
class ChipDetails:
    """dlib's ``chip_details``: rectangle (left, top, right, bottom) in image pixels, angle, size."""

    rect: tuple[float, float, float, float]
    angle: float
    rows: int
    cols: int


def chip_details(landmarks: np.ndarray, size: int = 150, padding: float = 0.25) -> ChipDetails:
    """dlib's ``get_face_chip_details(full_object_detection, size, padding)`` for 5 landmarks."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (5, 2):
        raise ValueError("landmarks must be a (5, 2) array (dlib's 5-point order)")
    size = int(size)
    if size <= 0 or padding < 0:
        raise ValueError("size must be positive and padding non-negative")
    pad = float(np.float32(padding))  # the Python binding takes padding as a C float
    inv = 1.0 / (2 * pad + 1)  # dlib divides a matrix by a scalar as a multiply by 1/s
    sz = float(size)
    frm = [((x + pad) * inv * sz, (y + pad) * inv * sz) for x, y in TEMPLATE_5]
    to = [(float(x), float(y)) for x, y in pts]
    tform = geo.find_similarity_transform(frm, to)
    (m00, _), (m10, _) = tform[0]
    # p = m * (1, 0)
    px, py = m00 * 1.0 + tform[0][0][1] * 0.0, m10 * 1.0 + tform[0][1][1] * 0.0
    angle = math.atan2(py, px)
    scale = math.sqrt(px * px + py * py)
    cx, cy = geo.apply(tform, size / 2.0, size / 2.0)
    w = size * scale - 1
    h = size * scale - 1
    return ChipDetails((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), angle, size, size)


def chip_transform(landmarks: np.ndarray, size: int = 150, padding: float = 0.25) -> np.ndarray:
    """The 2x3 affine map from chip pixel (x, y, 1) to source image coordinates.

    This is the map dlib samples through when no pyramid level is needed (faces up to about
    twice the chip size); larger faces are sampled from a shrunk copy, but this matrix still
    says where each chip pixel comes from in the original image (up to the pyramid's offset).
    """
    d = chip_details(landmarks, size, padding)
    (m00, m01), (m10, m11) = (t := _chip_affine(d, d.rect))[0]
    b0, b1 = t[1]
    return np.array([[m00, m01, b0], [m10, m11, b1]])


# -- dlib's drectangle helpers (width = right - left + 1) ------------------------------------

def _empty(r) -> bool:
    return r[1] > r[3] or r[0] > r[2]


def _area(r) -> float:
    return 0.0 if _empty(r) else (r[2] - r[0] + 1) * (r[3] - r[1] + 1)


def _point_down(x: float, y: float) -> tuple[float, float]:
    return x / 2.0 - 1.25, y / 2.0 - 0.75


def _rect_down(r):
    l, t = _point_down(r[0], r[1])
    rr, b = _point_down(r[2], r[3])
    return (min(l, rr), min(t, b), max(l, rr), max(t, b))


def _center(r) -> tuple[float, float]:
    return (r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0


def _rot_corners(r, angle: float):
    c = _center(r)
    return [geo.rotate_point(c, p, angle) for p in ((r[0], r[1]), (r[2], r[1]), (r[0], r[3]), (r[2], r[3]))]


def _chip_affine(d: ChipDetails, rect) -> geo.Affine:
    tl, tr, bl, _ = _rot_corners(rect, d.angle)
    frm = [(0.0, 0.0), (float(d.cols - 1), 0.0), (0.0, float(d.rows - 1))]
    return geo.find_affine_transform(frm, [tl, tr, bl])


def _union(a, b):
    """dlib rectangle union (``a + b``) with empty-rectangle rules; integer rectangles."""
    if b[0] > b[2] or b[1] > b[3]:
        return a
    if a[0] > a[2] or a[1] > a[3]:
        return b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


# -- pixel work -----------------------------------------------------------------------------

def pyramid_down2(img: np.ndarray) -> np.ndarray:
    """dlib's ``pyramid_down<2>`` on an RGB uint8 image: integer [1 4 6 4 1] filter, /256.

    Output pixel (r, c) is centred on input pixel (2r + 2, 2c + 2); all sums fit in uint16,
    as in dlib.
    """
    nr, nc = img.shape[:2]
    if nr <= 8 or nc <= 8:
        return np.zeros((0, 0) + img.shape[2:], np.uint8)
    tc = (nc - 3) // 2
    dr = (nr - 3) // 2
    o = img[: 2 * dr + 3, : 2 * tc + 3].astype(np.uint16)
    e = 2 * tc
    tmp = o[:, 0:e:2] + o[:, 4:e + 4:2]
    tmp += 4 * (o[:, 1:e + 1:2] + o[:, 3:e + 3:2])
    tmp += 6 * o[:, 2:e + 2:2]
    e = 2 * dr
    down = tmp[0:e:2] + tmp[4:e + 4:2]
    down += 4 * (tmp[1:e + 1:2] + tmp[3:e + 3:2])
    down += 6 * tmp[2:e + 2:2]
    down >>= 8
    return down.astype(np.uint8)


def _transform_image(
    src: np.ndarray, area: tuple[int, int, int, int], rows: int, cols: int, t: geo.Affine
) -> np.ndarray:
    """dlib's ``transform_image`` with ``interpolate_bilinear`` and a black background.

    Samples ``src[top:top+nr, left:left+nc]`` (``area = (left, top, nc, nr)``; ``src`` C-contiguous
    RGB) at ``t(c, r)`` for every chip pixel.
    """
    (m00, m01), (m10, m11) = t[0]
    b0, b1 = t[1]
    off_x, off_y, nc, nr = area
    c = np.arange(cols, dtype=np.float64)[None, :]
    r = np.arange(rows, dtype=np.float64)[:, None]
    x = (m00 * c + m01 * r) + b0
    y = (m10 * c + m11 * r) + b1
    left = np.floor(x)
    top = np.floor(y)
    ok = (left >= 0) & (top >= 0) & (left < nc - 1) & (top < nr - 1)
    if not ok.any():
        return np.zeros((rows, cols, 3), np.uint8)
    width = src.shape[1]
    idx = (np.where(ok, top, 0).astype(np.intp) + off_y) * width + (np.where(ok, left, 0).astype(np.intp) + off_x)
    flat = src.reshape(-1, 3)
    tl = flat.take(idx, axis=0)
    tr = flat.take(idx + 1, axis=0)
    bl = flat.take(idx + width, axis=0)
    br = flat.take(idx + width + 1, axis=0)
    lr = (x - left)[..., None]
    tb = (y - top)[..., None]
    v = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)
    out = np.clip(v, 0, 255).astype(np.uint8)  # assign_pixel: clamp, then truncate
    out[~ok] = 0
    return out


def _basic_extract(img: np.ndarray, rect, rows: int, cols: int) -> np.ndarray:
    """dlib's ``basic_extract_image_chip``: an unscaled, unrotated copy, zero outside the image."""
    l, t = geo.round_half_up(rect[0]), geo.round_half_up(rect[1])
    out = np.zeros((rows, cols) + img.shape[2:], np.uint8)
    nr, nc = img.shape[:2]
    y0, y1 = max(t, 0), min(t + rows, nr)
    x0, x1 = max(l, 0), min(l + cols, nc)
    if y0 < y1 and x0 < x1:
        out[y0 - t:y1 - t, x0 - l:x1 - l] = img[y0:y1, x0:x1]
    return out


def extract_image_chips(image: np.ndarray, details: Sequence[ChipDetails]) -> list[np.ndarray]:
    """dlib's ``extract_image_chips(img, chip_locations, chips)`` (bilinear), for RGB uint8."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError("image must be an (H, W, 3) RGB uint8 array")
    img = np.ascontiguousarray(img)
    nr, nc = img.shape[:2]
    max_depth = 0
    bbox = (0, 0, -1, -1)
    for d in details:
        size = float(d.rows * d.cols)
        depth = 0
        grow = 2.0
        rect = _rect_down(d.rect)
        while _area(rect) > size:
            rect = _rect_down(rect)
            depth += 1
            grow = grow * 2 + 2
        corners = _rot_corners(d.rect, d.angle)
        xs = [p[0] for p in corners]
        ys = [p[1] for p in corners]
        g = (min(xs) - grow, min(ys) - grow, max(xs) + grow, max(ys) + grow)
        g = (max(g[0], 0.0), max(g[1], 0.0), min(g[2], float(nc - 1)), min(g[3], float(nr - 1)))
        bbox = _union(bbox, tuple(geo.round_half_up(v) for v in g))
        max_depth = max(depth, max_depth)

    if _empty(bbox):
        bl = bt = 0
        crop_area = (0, 0, 0, 0)
    else:
        bl, bt = bbox[0], bbox[1]
        crop_area = (bl, bt, bbox[2] - bl + 1, bbox[3] - bt + 1)
    crop = img[bt:bt + crop_area[3], bl:bl + crop_area[2]]
    levels = []
    for i in range(max_depth):
        levels.append(pyramid_down2(levels[-1] if levels else crop))

    chips = []
    for d in details:
        size = float(d.rows * d.cols)
        r = d.rect
        if d.angle == 0 and d.rows == r[3] - r[1] + 1 and d.cols == r[2] - r[0] + 1:
            chips.append(_basic_extract(img, r, d.rows, d.cols))
            continue
        level = -1
        rect = (r[0] - bl, r[1] - bt, r[2] - bl, r[3] - bt)
        while _area(_rect_down(rect)) > size:
            level += 1
            rect = _rect_down(rect)
        t = _chip_affine(d, rect)
        if level == -1:
            chips.append(_transform_image(img, crop_area, d.rows, d.cols, t))
        else:
            lv = levels[level]
            chips.append(_transform_image(lv, (0, 0, lv.shape[1], lv.shape[0]), d.rows, d.cols, t))
    return chips


def face_chip(image: np.ndarray, landmarks: np.ndarray, size: int = 150, padding: float = 0.25) -> np.ndarray:
    """``dlib.get_face_chip(img, full_object_detection(rect, landmarks), size, padding)``.

    ``image`` is (H, W, 3) RGB uint8; ``landmarks`` the (5, 2) points of the 5-point predictor
    (dlib hands integer points; pass them as such for parity). Returns (size, size, 3) uint8.
    """
    return extract_image_chips(image, [chip_details(landmarks, size, padding)])[0]


def face_chips(
    image: np.ndarray,
    landmarks: Sequence[np.ndarray],
    size: int = 150,
    padding: float = 0.25,
    joint: bool = False,
) -> np.ndarray:
    """Chips for several faces of one image, (N, size, size, 3) uint8.

    By default each chip equals :func:`face_chip` (what ``face_recognition`` and
    ``compute_face_descriptor`` with one face get). ``joint=True`` reproduces
    ``dlib.get_face_chips``, which shares one crop and pyramid among all faces (its chips can
    differ slightly when faces need different pyramid depths).
    """
    dets = [chip_details(lm, size, padding) for lm in landmarks]
    if not dets:
        return np.zeros((0, size, size, 3), np.uint8)
    if joint:
        chips = extract_image_chips(image, dets)
    else:
        chips = [extract_image_chips(image, [d])[0] for d in dets]
    return np.stack(chips)
