"""Aligned 150x150 chips cut on the device (torch): dlib's ``get_face_chip`` as tensor ops.

When frames are decoded on the GPU, cutting chips on the host would mean copying every frame
back (a 1080p frame is 6 MB; its chips 67.5 KB each). Here the chip geometry stays dlib's (the
host computes it from the 5 landmarks with :mod:`openlfr.engine.chips`, a few microseconds a
face) and only the pixel work runs on the device:

- the crop and dlib's ``pyramid_down<2>`` (integer [1 4 6 4 1]/256 filter) for faces larger
  than about twice the chip, in exact integer arithmetic (float32 holds every partial sum);
- the bilinear warp through dlib's affine map with ``grid_sample`` (``align_corners=True``
  puts sample ``x`` at pixel ``x`` as dlib does), samples whose 2x2 neighbourhood leaves the
  image set to 0, values clamped and truncated to uint8 as dlib's ``assign_pixel`` does.

All the chips of one frame that need no pyramid go through one ``grid_sample`` call (their
grids stacked, made in one batched operation from the (N, 2, 3) maps that ``plan_chips``
computes for all faces at once in numpy). Against dlib's chips (``chips.face_chip``, which is bit-exact with dlib) the
only difference is float32 rounding in the interpolation: a pixel can differ by 1
(tests/test_torch_chips.py checks pixels and descriptor distances on real faces).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import chips as C


@dataclass(frozen=True)
class ChipPlan:
    """Where one chip comes from: crop (left, top, width, height) of the frame, how many
    pyramid halvings (0: none), and the 2x3 map from chip (col, row) to crop/level pixels."""

    crop: tuple[int, int, int, int]
    halvings: int
    affine: tuple[tuple[float, float, float], tuple[float, float, float]]
    rows: int
    cols: int


def plan_chip(image_shape: tuple[int, ...], landmarks: np.ndarray, size: int = 150, padding: float = 0.25) -> ChipPlan:
    """dlib's ``extract_image_chips`` geometry for one chip (as ``chips.face_chip`` does it)."""
    nr, nc = int(image_shape[0]), int(image_shape[1])
    d = C.chip_details(landmarks, size, padding)
    area = float(d.rows * d.cols)
    grow = 2.0
    rect = C._rect_down(d.rect)
    while C._area(rect) > area:
        rect = C._rect_down(rect)
        grow = grow * 2 + 2
    corners = C._rot_corners(d.rect, d.angle)
    xs, ys = [p[0] for p in corners], [p[1] for p in corners]
    g = (min(xs) - grow, min(ys) - grow, max(xs) + grow, max(ys) + grow)
    g = (max(g[0], 0.0), max(g[1], 0.0), min(g[2], float(nc - 1)), min(g[3], float(nr - 1)))
    bbox = C._union((0, 0, -1, -1), tuple(C.geo.round_half_up(v) for v in g))
    if C._empty(bbox):
        bl = bt = 0
        crop = (0, 0, 0, 0)
    else:
        bl, bt = bbox[0], bbox[1]
        crop = (bl, bt, bbox[2] - bl + 1, bbox[3] - bt + 1)
    r = d.rect
    level = -1
    rect = (r[0] - bl, r[1] - bt, r[2] - bl, r[3] - bt)
    while C._area(C._rect_down(rect)) > area:
        level += 1
        rect = C._rect_down(rect)
    (m00, m01), (m10, m11) = (t := C._chip_affine(d, rect))[0]
    b0, b1 = t[1]
    return ChipPlan(crop, level + 1, ((m00, m01, b0), (m10, m11, b1)), d.rows, d.cols)


def _template(size: int, padding: float) -> np.ndarray:
    pad = float(np.float32(padding))
    return (np.asarray(C.TEMPLATE_5, np.float64) + pad) * (1.0 / (2 * pad + 1)) * float(size)


def _rect_down(r: np.ndarray) -> np.ndarray:
    """``chips._rect_down`` on (N, 4) rectangles (l, t, r, b)."""
    l, t = r[:, 0] / 2.0 - 1.25, r[:, 1] / 2.0 - 0.75
    rr, b = r[:, 2] / 2.0 - 1.25, r[:, 3] / 2.0 - 0.75
    return np.stack([np.minimum(l, rr), np.minimum(t, b), np.maximum(l, rr), np.maximum(t, b)], 1)


def _area(r: np.ndarray) -> np.ndarray:
    return np.where((r[:, 1] > r[:, 3]) | (r[:, 0] > r[:, 2]), 0.0, (r[:, 2] - r[:, 0] + 1) * (r[:, 3] - r[:, 1] + 1))


def _corners(r: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """The 4 corners (tl, tr, bl, br) of each rectangle rotated by ``angle`` about its centre: (N, 4, 2)."""
    cx, cy = (r[:, 0] + r[:, 2]) / 2.0, (r[:, 1] + r[:, 3]) / 2.0
    px = np.stack([r[:, 0], r[:, 2], r[:, 0], r[:, 2]], 1) - cx[:, None]
    py = np.stack([r[:, 1], r[:, 1], r[:, 3], r[:, 3]], 1) - cy[:, None]
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return np.stack([cos * px - sin * py + cx[:, None], sin * px + cos * py + cy[:, None]], -1)


def plan_chips(image_shape: tuple[int, ...], landmarks, size: int = 150, padding: float = 0.25):
    """``plan_chip`` for N faces at once, vectorised (numpy): (crops (N, 4) int, halvings (N,),
    affines (N, 2, 3)). The same geometry, in closed form (the 2-D least-squares similarity) and
    numpy's order of operations: it agrees with ``plan_chip`` to ~1e-9 px. About 100x faster,
    so the host's part stays small beside the device's at 300,000 faces/s."""
    pts = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    n = len(pts)
    nr, nc = int(image_shape[0]), int(image_shape[1])
    frm = _template(size, padding)
    df = frm - frm.mean(0)
    dt = pts - pts.mean(1, keepdims=True)
    sf = (df ** 2).sum()
    a = (df[None, :, 0] * dt[:, :, 0] + df[None, :, 1] * dt[:, :, 1]).sum(1) / sf
    b = (df[None, :, 0] * dt[:, :, 1] - df[None, :, 1] * dt[:, :, 0]).sum(1) / sf
    # x' = a x - b y + tx, y' = b x + a y + ty
    mf = frm.mean(0)
    tx = pts[:, :, 0].mean(1) - (a * mf[0] - b * mf[1])
    ty = pts[:, :, 1].mean(1) - (b * mf[0] + a * mf[1])
    angle = np.arctan2(b, a)
    scale = np.hypot(a, b)
    h = size / 2.0
    cx, cy = a * h - b * h + tx, b * h + a * h + ty
    w = size * scale - 1
    rect = np.stack([cx - w / 2, cy - w / 2, cx + w / 2, cy + w / 2], 1)
    area = float(size * size)
    grow = np.full(n, 2.0)
    rd = _rect_down(rect)
    while True:
        more = _area(rd) > area
        if not more.any():
            break
        rd = np.where(more[:, None], _rect_down(rd), rd)
        grow = np.where(more, grow * 2 + 2, grow)
    cs = _corners(rect, angle)
    g = np.stack([cs[:, :, 0].min(1) - grow, cs[:, :, 1].min(1) - grow, cs[:, :, 0].max(1) + grow,
                  cs[:, :, 1].max(1) + grow], 1)
    g = np.stack([np.maximum(g[:, 0], 0.0), np.maximum(g[:, 1], 0.0), np.minimum(g[:, 2], nc - 1.0),
                  np.minimum(g[:, 3], nr - 1.0)], 1)
    box = np.floor(g + 0.5).astype(np.int64)
    empty = (box[:, 0] > box[:, 2]) | (box[:, 1] > box[:, 3])
    bl, bt = np.where(empty, 0, box[:, 0]), np.where(empty, 0, box[:, 1])
    crops = np.stack([bl, bt, np.where(empty, 0, box[:, 2] - bl + 1), np.where(empty, 0, box[:, 3] - bt + 1)], 1)
    rel = rect - np.stack([bl, bt, bl, bt], 1)
    halvings = np.zeros(n, np.int64)
    while True:
        down = _rect_down(rel)
        more = _area(down) > area
        if not more.any():
            break
        rel = np.where(more[:, None], down, rel)
        halvings += more
    cs = _corners(rel, angle)
    tl, tr, bl_ = cs[:, 0], cs[:, 1], cs[:, 2]
    affines = np.stack([np.stack([(tr[:, 0] - tl[:, 0]) / (size - 1), (bl_[:, 0] - tl[:, 0]) / (size - 1), tl[:, 0]], 1),
                        np.stack([(tr[:, 1] - tl[:, 1]) / (size - 1), (bl_[:, 1] - tl[:, 1]) / (size - 1), tl[:, 1]], 1)], 1)
    return crops, halvings, affines


def pyramid_down2(img):
    """dlib's ``pyramid_down<2>`` on a (3, H, W) float tensor of integer values (exact)."""
    import torch

    nr, nc = img.shape[-2:]
    if nr <= 8 or nc <= 8:
        return img.new_zeros((img.shape[0], 0, 0))
    tc, dr = (nc - 3) // 2, (nr - 3) // 2
    o = img[:, : 2 * dr + 3, : 2 * tc + 3]
    e = 2 * tc
    tmp = o[:, :, 0:e:2] + o[:, :, 4:e + 4:2] + 4 * (o[:, :, 1:e + 1:2] + o[:, :, 3:e + 3:2]) + 6 * o[:, :, 2:e + 2:2]
    e = 2 * dr
    down = tmp[:, 0:e:2] + tmp[:, 4:e + 4:2] + 4 * (tmp[:, 1:e + 1:2] + tmp[:, 3:e + 3:2]) + 6 * tmp[:, 2:e + 2:2]
    return torch.floor(down / 256.0)


class DeviceChipWarper:
    """Chips of faces in frames that are (or will be) on ``device``.

    ``chips(frame, landmarks)``: ``frame`` (H, W, 3) uint8, a numpy array or a tensor already on
    the device; ``landmarks`` a list of (5, 2) arrays (dlib's 5-point order). Returns an
    (N, size, size, 3) uint8 tensor on the device, ready for ``TorchDescriptorModel``.
    """

    def __init__(self, device: str = "cpu", size: int = 150, padding: float = 0.25):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.size, self.padding = int(size), float(padding)
        cr = torch.arange(self.size, dtype=torch.float64, device=self.device)
        self._rows, self._cols = torch.meshgrid(cr, cr, indexing="ij")  # chip pixel (row, col)
        self._rows, self._cols = self._rows[None], self._cols[None]

    def _as_chw(self, frame):
        torch = self.torch
        if not isinstance(frame, torch.Tensor):
            a = np.asarray(frame)
            frame = torch.from_numpy(a if a.flags.writeable and a.flags.c_contiguous else np.array(a))
        t = frame
        if t.dtype != torch.uint8 or t.ndim != 3 or t.shape[2] != 3:
            raise ValueError("frame must be an (H, W, 3) uint8 RGB image")
        return t.to(self.device, non_blocking=True).permute(2, 0, 1).float()  # (3, H, W)

    def _grid(self, affines):
        """Sample coordinates (x, y), each (N, size, size), of chips through (N, 2, 3) maps."""
        A = self.torch.as_tensor(affines, dtype=self.torch.float64, device=self.device)
        c, r = self._cols, self._rows
        x = A[:, 0, 0, None, None] * c + A[:, 0, 1, None, None] * r + A[:, 0, 2, None, None]
        y = A[:, 1, 0, None, None] * c + A[:, 1, 1, None, None] * r + A[:, 1, 2, None, None]
        return x, y

    def chips(self, frame, landmarks) -> "object":
        torch = self.torch
        F = torch.nn.functional
        img = self._as_chw(frame)
        H, W = img.shape[-2:]
        n = len(landmarks)
        out = torch.zeros((n, 3, self.size, self.size), dtype=torch.float32, device=self.device)
        if n == 0:
            return out.to(torch.uint8).permute(0, 2, 3, 1)
        crops, halvings, affines = plan_chips((H, W), np.asarray(landmarks, np.float64).reshape(n, 5, 2), self.size, self.padding)
        direct = np.flatnonzero((halvings == 0) & (crops[:, 2] > 0))
        if len(direct):  # one grid_sample for every chip sampled straight from the frame
            x, y = self._grid(affines[direct])
            cr = torch.as_tensor(crops[direct], dtype=torch.float64, device=self.device)
            mask = self._valid(x, y, cr[:, 2, None, None], cr[:, 3, None, None])
            gx = (x + cr[:, 0, None, None]) * (2.0 / (W - 1)) - 1
            gy = (y + cr[:, 1, None, None]) * (2.0 / (H - 1)) - 1
            grid = torch.stack([gx, gy], -1).reshape(1, len(direct) * self.size, self.size, 2).float()
            v = F.grid_sample(img.unsqueeze(0), grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
            v = v.reshape(3, len(direct), self.size, self.size).permute(1, 0, 2, 3)
            out[torch.as_tensor(direct, device=self.device)] = v * mask.unsqueeze(1)
        for i in np.flatnonzero((halvings > 0) & (crops[:, 2] > 0)):  # large faces: crop, halve, sample
            l, t, w, h = (int(v) for v in crops[i])
            src = img[:, t:t + h, l:l + w]
            for _ in range(int(halvings[i])):
                src = pyramid_down2(src)
            sh, sw = src.shape[-2:]
            if sh < 2 or sw < 2:
                continue
            x, y = self._grid(affines[i:i + 1])
            grid = torch.stack([x * (2.0 / (sw - 1)) - 1, y * (2.0 / (sh - 1)) - 1], -1).float()
            v = F.grid_sample(src.unsqueeze(0), grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
            out[i] = v * self._valid(x, y, sw, sh)[0]
        # assign_pixel: clamp, then truncate
        return out.clamp_(0, 255).floor_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    def _valid(self, x, y, w: int, h: int):
        """dlib samples only where the whole 2x2 neighbourhood lies inside the source."""
        left, top = self.torch.floor(x), self.torch.floor(y)
        return ((left >= 0) & (top >= 0) & (left < w - 1) & (top < h - 1)).float()
