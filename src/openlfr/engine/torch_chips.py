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
grids stacked). Against dlib's chips (``chips.face_chip``, which is bit-exact with dlib) the
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

    def _as_chw(self, frame):
        torch = self.torch
        if not isinstance(frame, torch.Tensor):
            a = np.asarray(frame)
            frame = torch.from_numpy(a if a.flags.writeable and a.flags.c_contiguous else np.array(a))
        t = frame
        if t.dtype != torch.uint8 or t.ndim != 3 or t.shape[2] != 3:
            raise ValueError("frame must be an (H, W, 3) uint8 RGB image")
        return t.to(self.device, non_blocking=True).permute(2, 0, 1).float()  # (3, H, W)

    def _coords(self, plan: ChipPlan):
        """Sample coordinates (rows, cols) in the source of ``plan`` (float64, dlib's order)."""
        (m00, m01, b0), (m10, m11, b1) = plan.affine
        x = (m00 * self._cols + m01 * self._rows) + b0
        y = (m10 * self._cols + m11 * self._rows) + b1
        return x, y

    def chips(self, frame, landmarks) -> "object":
        torch = self.torch
        F = torch.nn.functional
        img = self._as_chw(frame)
        H, W = img.shape[-2:]
        plans = [plan_chip((H, W), lm, self.size, self.padding) for lm in landmarks]
        out = torch.zeros((len(plans), 3, self.size, self.size), dtype=torch.float32, device=self.device)
        direct = [i for i, p in enumerate(plans) if p.halvings == 0 and p.crop[2] > 0]
        if direct:  # one grid_sample for every chip sampled straight from the frame
            grids, masks = [], []
            for i in direct:
                p = plans[i]
                x, y = self._coords(p)
                masks.append(self._valid(x, y, p.crop[2], p.crop[3]))
                grids.append(torch.stack([(x + p.crop[0]) * (2.0 / (W - 1)) - 1, (y + p.crop[1]) * (2.0 / (H - 1)) - 1], -1))
            grid = torch.cat(grids, 0).unsqueeze(0).float()  # (1, n*size, size, 2)
            v = F.grid_sample(img.unsqueeze(0), grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
            v = v.reshape(3, len(direct), self.size, self.size).permute(1, 0, 2, 3)
            out[direct] = v * torch.stack(masks).unsqueeze(1)
        for i, p in enumerate(plans):
            if i in direct or p.crop[2] == 0:
                continue
            l, t, w, h = p.crop
            src = img[:, t:t + h, l:l + w]
            for _ in range(p.halvings):
                src = pyramid_down2(src)
            sh, sw = src.shape[-2:]
            if sh < 2 or sw < 2:
                continue
            x, y = self._coords(p)
            grid = torch.stack([x * (2.0 / (sw - 1)) - 1, y * (2.0 / (sh - 1)) - 1], -1).unsqueeze(0).float()
            v = F.grid_sample(src.unsqueeze(0), grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
            out[i] = v * self._valid(x, y, sw, sh)
        # assign_pixel: clamp, then truncate
        return out.clamp_(0, 255).floor_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    def _valid(self, x, y, w: int, h: int):
        """dlib samples only where the whole 2x2 neighbourhood lies inside the source."""
        left, top = self.torch.floor(x), self.torch.floor(y)
        return ((left >= 0) & (top >= 0) & (left < w - 1) & (top < h - 1)).float()
