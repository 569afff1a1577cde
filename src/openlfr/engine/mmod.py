"""dlib's MMOD CNN face detector (``cnn_face_detection_model_v1``) on onnxruntime.

The network (three 5x5/2 convs, three 5x5 convs with 45 filters, one 9x9 conv to a score map)
is built as an ONNX graph from the weights in ``mmod_human_face_detector.dat`` (affine folded
into the convolutions). Everything around it reproduces dlib 20 step by step:

- ``upsample`` times dlib's ``pyramid_up`` (``pyramid_down<2>`` geometry, bilinear
  ``resize_image`` on RGB bytes, truncated);
- ``input_rgb_image_pyramid<pyramid_down<6>>``: (pixel - mean) / 256 in float32, every
  pyramid level (5/6 of the previous one, down to 5 rows) made from the previous level with
  dlib's float bilinear ``resize_image`` (including its float32 SIMD coordinate stepping) and
  packed into one tiled image (padding 10, outer padding 11, zeros elsewhere);
- ``loss_mmod``: every score map value > 0 becomes an 80x80 window centred on the output
  position mapped back through the conv geometry (x_in = 8 x_out + 14), then through the tiled
  pyramid to image coordinates; greedy non-max suppression, highest score first, with dlib's
  ``test_box_overlap`` (intersection over the *bounding box* of both > 0.338, or over either
  box > 1.0) on rounded rectangles; boxes mapped back through the upsampling and rounded.

With ``min_face=None`` the boxes are dlib's (same count and coordinates, scores within float32
noise, ~2e-6). ``min_face`` drops smaller boxes and tiles only the pyramid levels whose
window can match it (one level of margin), each tile at dlib's position modulo the output
stride 8: windows fall on the same pixels, so boxes stay dlib's and scores move slightly
(<~0.01, the network sees other neighbours within ~94 px of a tile's edge); the fine-level
windows no longer take part in non-max suppression.

The ONNX graph is rewritten for onnxruntime's blocked convolutions (see ``build_mmod_onnx``);
the pyramid is computed in numpy with dlib's exact arithmetic (``resize_planes``).
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import onnx

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # no telemetry (as openlfr/__init__ does), before onnxruntime loads
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper

from .detection import Detection
from .dnn_reader import Network, load_network
from .models import MMOD
from .onnx_graph import GraphBuilder, fold_affine

F32 = np.float32
PYR_RATE = 5.0 / 6.0  # pyramid_down<6>
MIN_LEVEL_ROWS = 5  # compute_tiled_image_pyramid_details stops below this
# output position -> input position: three stride-2 valid 5x5 convs, the rest 'same'
OUT_STRIDE = 8
OUT_OFFSET = 14


# ---------------------------------------------------------------------------------------------
# Network


@dataclass(frozen=True)
class ConvSpec:
    weight: np.ndarray  # OIHW float32, affine folded in
    bias: np.ndarray
    stride: tuple[int, int]
    pad: tuple[int, int]
    relu: bool


def mmod_convs(net: Network) -> list[ConvSpec]:
    """The network as conv(+folded affine)(+relu) steps, checked against dlib's MMOD type."""
    layers, out, i = net.layers, [], 0
    while i < len(layers):
        layer = layers[i]
        if layer.kind != "con":
            raise ValueError(f"unexpected MMOD layer {layer.kind!r} at {i}")
        w, b = layer.params["weight"], layer.params["bias"]
        i += 1
        if i < len(layers) and layers[i].kind == "affine":
            w, b = fold_affine(w, b, layers[i].params["gamma"], layers[i].params["beta"])
            i += 1
        relu = i < len(layers) and layers[i].kind == "relu"
        i += int(relu)
        out.append(ConvSpec(w, b, tuple(layer.params["stride"]), tuple(layer.params["pad"]), relu))
    shapes = [(c.weight.shape, c.stride) for c in out]
    expected = [
        ((16, 3, 5, 5), (2, 2)), ((32, 16, 5, 5), (2, 2)), ((32, 32, 5, 5), (2, 2)),
        ((45, 32, 5, 5), (1, 1)), ((45, 45, 5, 5), (1, 1)), ((45, 45, 5, 5), (1, 1)),
        ((1, 45, 9, 9), (1, 1)),
    ]  # fmt: skip
    if shapes != expected or [c.relu for c in out] != [True] * 6 + [False]:
        raise ValueError(f"not dlib's MMOD face detector network: {shapes}")
    return out


def _pad_channels(w: np.ndarray, b: np.ndarray, c_in: int, c_out: int) -> tuple[np.ndarray, np.ndarray]:
    o, i = w.shape[:2]
    wp = np.zeros((c_out, c_in, *w.shape[2:]), F32)
    wp[:o, :i] = w
    bp = np.zeros(c_out, F32)
    bp[:o] = b
    return wp, bp


def build_mmod_onnx(net: Network, fast: bool = True) -> onnx.ModelProto:
    """ONNX graph (1, 3, H, W) float32 -> score map (1, 1, H', W').

    ``fast`` rewrites the graph for onnxruntime's blocked (NCHWc) convolutions, with the same
    results up to float rounding: channel counts padded to multiples of 16 with zero filters
    (45 -> 48), and the 9x9 one-filter last layer split into nine 1x9 row filters (one conv
    with 9 -> 16 outputs) followed by a 9x1 conv that sums them with the right row shifts.
    """
    convs = mmod_convs(net)
    g = GraphBuilder("mmod")
    x = "input"
    if not fast:
        for c in convs:
            x = g.conv(x, c.weight, c.bias, c.stride, c.pad)
            if c.relu:
                x = g.relu(x)
    else:
        c_in = 3
        for c in convs[:-1]:
            c_out = -(-c.weight.shape[0] // 16) * 16
            w, b = _pad_channels(c.weight, c.bias, c_in, c_out)
            x = g.relu(g.conv(x, w, b, c.stride, c.pad))
            c_in = c_out
        last = convs[-1]
        kh, kw = last.weight.shape[2:]
        rows = np.zeros((16, c_in, 1, kw), F32)
        for j in range(kh):
            rows[j, : last.weight.shape[1], 0, :] = last.weight[0, :, j, :]
        x = g.conv(x, rows, np.zeros(16, F32), (1, 1), (0, last.pad[1]))
        shift = np.zeros((1, 16, kh, 1), F32)
        for j in range(kh):
            shift[0, j, j, 0] = 1.0
        x = g.conv(x, shift, last.bias, (1, 1), (last.pad[0], 0))
    g.nodes[-1].output[0] = "scores"
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "H", "W"])
    out = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, "h", "w"])
    return g.model([inp], [out])


@lru_cache(maxsize=1)
def mmod_network() -> Network:
    return load_network(MMOD)


@lru_cache(maxsize=2)
def mmod_model_bytes(fast: bool = True) -> bytes:
    return build_mmod_onnx(mmod_network(), fast).SerializeToString()


def mmod_session(threads: int | None = None, fast: bool = True) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads or (os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(mmod_model_bytes(fast), so, providers=["CPUExecutionProvider"])


class OnnxMmodNetwork:
    """The score-map network on onnxruntime (CPU): tiled input (1, 3, H, W) -> (h, w) scores.

    ``MmodDetector`` takes any object with this call (``network=``), e.g. the PyTorch one of
    ``torch_mmod.py``; the pyramid, window mapping and non-max suppression stay the same."""

    runtime = "onnxruntime-cpu"

    def __init__(self, threads: int | None = None):
        self.session = mmod_session(threads)

    def __call__(self, tensor: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input": tensor})[0][0, 0]


# ---------------------------------------------------------------------------------------------
# dlib's bilinear resize_image (dlib/image_transforms/interpolation.h), bit-exact


@dataclass(frozen=True)
class _Plan:
    """Sample positions and weights of one dlib resize_image (h, w) -> (n_rows, n_cols)."""

    top: np.ndarray  # source rows (top, bottom) of each output row
    bot: np.ndarray
    tb: np.ndarray  # float64 vertical fraction
    tb32: np.ndarray  # (n_rows, 1) float32 fraction and 1 - fraction, as the SIMD loop uses
    itb32: np.ndarray
    ns: int  # columns done by dlib's 4-wide float32 SIMD loop (the rest: scalar tail)
    lo: np.ndarray  # source columns (left, right) of each output column
    hi: np.ndarray
    lr32: np.ndarray  # (n_cols,) float32 horizontal fraction and 1 - fraction
    ilr32: np.ndarray
    lr64: np.ndarray  # float64 horizontal fraction (tail columns)


@lru_cache(maxsize=512)
def resize_plan(h: int, w: int, n_rows: int, n_cols: int) -> _Plan:
    """Replicates dlib's arithmetic: row positions accumulated in double; column positions in
    4 float32 lanes stepped by float32(4*scale) (truncated to ints) until a block would read
    past the last column, then the remaining columns in double."""
    ys = (h - 1) / max(n_rows - 1, 1)
    seq = np.full(n_rows + 1, ys)
    seq[0] = -ys
    yv = np.add.accumulate(seq)[1:]  # sequential double sums, exactly as dlib's loop
    top = np.floor(yv).astype(np.intp)
    tb = yv - top

    xs = (w - 1) / max(n_cols - 1, 1)
    nblk = n_cols // 4 + 2
    lanes = np.empty((nblk, 4), F32)
    for j in range(4):
        seq = np.full(nblk + 1, F32(4 * xs), F32)
        seq[0] = F32(-4 * xs + j * xs)
        lanes[:, j] = np.add.accumulate(seq, dtype=F32)[1:]
    left = lanes.astype(np.intp)  # simd4i(simd4f): truncation
    ok = left[:, 3] + 1 < w
    nblk_simd = nblk if ok.all() else int(np.argmin(ok))
    ns = min(4 * nblk_simd, n_cols)
    lo = np.empty(n_cols, np.intp)
    lr32 = np.empty(n_cols, F32)
    lr64 = np.zeros(n_cols, np.float64)
    lo[:ns] = left.reshape(-1)[:ns]
    lr32[:ns] = lanes.reshape(-1)[:ns] - lo[:ns].astype(F32)
    x = -xs + ns * xs
    for c in range(ns, n_cols):
        x += xs
        lo[c] = math.floor(x)
        lr64[c] = x - lo[c]
        lr32[c] = F32(lr64[c])
    return _Plan(
        top=top,
        bot=np.minimum(top + 1, h - 1),
        tb=tb,
        tb32=tb.astype(F32)[:, None],
        itb32=(1 - tb).astype(F32)[:, None],
        ns=ns,
        lo=lo,
        hi=np.minimum(lo + 1, w - 1),
        lr32=lr32,
        ilr32=F32(1) - lr32,
        lr64=lr64,
    )


_BLOCK_BYTES = 1 << 19  # rows per block: keep a block's temporaries in L2


def resize_planes(src: np.ndarray, out: np.ndarray, rgb: bool = False) -> np.ndarray:
    """dlib ``resize_image`` (bilinear) of planes ``src`` (C, h, w) float32 into ``out``
    (C, n_rows, n_cols), bit-exact. ``rgb``: dlib's rgb_pixel arithmetic (values truncated,
    scalar tail in double) instead of the float-image one."""
    c_, h, w = src.shape
    _, n_rows, n_cols = out.shape
    if n_rows == 0 or n_cols == 0 or h == 0 or w == 0:
        return out
    p = resize_plan(h, w, n_rows, n_cols)
    ns = p.ns
    lo_s, hi_s = p.lo[:ns], p.hi[:ns]
    lr, ilr = p.lr32[:ns], p.ilr32[:ns]
    lo_t, hi_t = p.lo[ns:], p.hi[ns:]
    step = max(1, _BLOCK_BYTES // (4 * c_ * max(w, n_cols)))
    for r0 in range(0, n_rows, step):
        r1 = min(n_rows, r0 + step)
        t_rows = src[:, p.top[r0:r1]]  # (np.take would copy a strided src whole)
        b_rows = src[:, p.bot[r0:r1]]
        if ns:
            itb, tb = p.itb32[r0:r1], p.tb32[r0:r1]
            acc = np.take(t_rows, lo_s, axis=2)
            acc *= itb * ilr
            tmp = np.take(t_rows, hi_s, axis=2)
            tmp *= itb * lr
            acc += tmp
            np.take(b_rows, lo_s, axis=2, out=tmp, mode="clip")
            tmp *= tb * ilr
            acc += tmp
            np.take(b_rows, hi_s, axis=2, out=tmp, mode="clip")
            tmp *= tb * lr
            acc += tmp
            if rgb:
                np.trunc(acc, out=acc)
            out[:, r0:r1, :ns] = acc
        if ns < n_cols:
            tbd = p.tb[r0:r1, None]
            if rgb:  # double throughout, truncated
                lrd = p.lr64[ns:]
                a = (1 - lrd) * t_rows[:, :, lo_t] + lrd * t_rows[:, :, hi_t]
                b = (1 - lrd) * b_rows[:, :, lo_t] + lrd * b_rows[:, :, hi_t]
                out[:, r0:r1, ns:] = np.trunc((1 - tbd) * a + tbd * b)
            else:  # float32 lerp across, double lerp down
                l32 = p.lr32[ns:]
                il32 = p.ilr32[ns:]
                a = il32 * t_rows[:, :, lo_t] + l32 * t_rows[:, :, hi_t]
                b = il32 * b_rows[:, :, lo_t] + l32 * b_rows[:, :, hi_t]
                out[:, r0:r1, ns:] = (1 - tbd) * a + tbd * b
    return out


def resize_rgb(img: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """dlib ``resize_image`` of an RGB uint8 image (H, W, 3), bit-exact."""
    planes = np.ascontiguousarray(np.moveaxis(img, 2, 0), dtype=F32)
    out = np.empty((3, n_rows, n_cols), F32)
    resize_planes(planes, out, rgb=True)
    return np.ascontiguousarray(np.moveaxis(out, 0, 2)).astype(np.uint8)


def pyramid_up_planes(planes: np.ndarray) -> np.ndarray:
    """dlib ``pyramid_up(img, pyramid_down<2>)`` on RGB planes (3, h, w) of pixel values:
    output size from rect_up(get_rect(img)) = (2.5, 1.5, 2w+0.5, 2h-0.5) rounded, i.e.
    2h+1 rows and 2w+2 columns; bilinear resize with rgb_pixel arithmetic."""
    _, h, w = planes.shape
    out = np.empty((3, 2 * h + 1, 2 * w + 2), F32)
    return resize_planes(planes, out, rgb=True)


def upsampled(image: np.ndarray, times: int) -> np.ndarray:
    """The image after ``times`` of dlib's pyramid_up: unchanged (H, W, 3) uint8 for 0, else
    float32 planes (3, h, w), as ``tiled_pyramid`` takes either."""
    if not times:
        return image
    img = np.ascontiguousarray(np.moveaxis(image, 2, 0), dtype=F32)
    for _ in range(times):
        img = pyramid_up_planes(img)
    return img


def pyramid_up(img: np.ndarray) -> np.ndarray:
    """``pyramid_up`` of an RGB uint8 image (H, W, 3)."""
    planes = np.ascontiguousarray(np.moveaxis(img, 2, 0), dtype=F32)
    return np.ascontiguousarray(np.moveaxis(pyramid_up_planes(planes), 0, 2)).astype(np.uint8)


def rect_down2(box: tuple[float, float, float, float], levels: int) -> tuple[float, ...]:
    """pyramid_down<2>::rect_down applied ``levels`` times (no rounding in between)."""
    l, t, r, b = box
    for _ in range(levels):
        l, t, r, b = l / 2.0 - 1.25, t / 2.0 - 0.75, r / 2.0 - 1.25, b / 2.0 - 0.75
    return l, t, r, b


def _round(v: float) -> int:
    return int(math.floor(v + 0.5))


# ---------------------------------------------------------------------------------------------
# Tiled pyramid (dlib/image_transforms/image_pyramid.h)


def pyramid_sizes(nr: int, nc: int) -> list[tuple[int, int]]:
    """(rows, cols) of every pyramid_down<6> level dlib builds, finest first."""
    sizes = [(nr, nc)]
    while True:
        nr, nc = math.floor(PYR_RATE * nr), math.floor(PYR_RATE * nc)
        if nr * nc == 0 or nr < MIN_LEVEL_ROWS:
            break
        sizes.append((nr, nc))
    return sizes


def tiled_layout(
    sizes: list[tuple[int, int]], padding: int = 10, outer_padding: int = 11, keep_gap: bool = False
) -> tuple[list[tuple[int, int, int, int]], int, int]:
    """compute_tiled_image_pyramid_details: level rects (left, top, right, bottom) and the
    tiled image's rows and cols. Levels that would overlap the first are dropped (with
    ``keep_gap``, not dlib's: also those that would come within ``padding`` of it)."""
    if not sizes or sizes[0][0] * sizes[0][1] == 0:
        return [], 0, 0
    h0, w0 = sizes[0]
    total_height = sum(h + padding for h, _ in sizes) - 2 * padding
    height = 0
    prev_width = 0
    for h, w in sizes:
        if w <= w0 - prev_width - padding and (height - h0) * 2 >= (total_height - h0):
            break
        height += h + padding
        prev_width = w
    height -= padding
    n_rows, n_cols = height + 2 * outer_padding, w0 + 2 * outer_padding
    rects: list[tuple[int, int, int, int]] = []
    y = outer_padding
    i = 0
    while y < height + outer_padding and i < len(sizes):
        h, w = sizes[i]
        rects.append((outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    first = rects[0]
    while i < len(sizes):
        h, w = sizes[i]
        right, bottom = outer_padding + w0 - 1, y - 1
        rect = (right - (w - 1), bottom - (h - 1), right, bottom)
        g = padding if keep_gap else 0
        if not (rect[0] - g > first[2] or rect[2] + g < first[0] or rect[1] - g > first[3] or rect[3] + g < first[1]):
            break
        rects.append(rect)
        y -= h + padding
        i += 1
    return rects, n_rows, n_cols


@dataclass
class TiledInput:
    tensor: np.ndarray  # (1, 3, rows, cols) float32
    rects: list[tuple[int, int, int, int]]  # tile of each pyramid level used
    levels: list[int]  # pyramid level index of each rect (0 = input image)


def _to_planes_normalised(img: np.ndarray, mean: np.ndarray, out: np.ndarray) -> None:
    """(pixel - mean) / 256 in float32, as input_rgb_image_pyramid::to_tensor computes it;
    ``img`` is RGB uint8 (H, W, 3) or planes of pixel values (3, H, W) float32."""
    for k in range(3):
        plane = img[:, :, k] if img.dtype == np.uint8 else img[k]
        np.subtract(plane, mean[k], out=out[k], dtype=F32)
        out[k] *= F32(1 / 256)


def _min_gap(rects: list[tuple[int, int, int, int]]) -> int:
    """Smallest number of blank pixels between two rects (negative: they overlap)."""
    gap = 1 << 30
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            gap = min(gap, max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3]) - 1)
    return gap


def coarse_layout(
    sizes: list[tuple[int, int]], first_level: int, padding: int = 10, outer_padding: int = 11
) -> tuple[list[tuple[int, int, int, int]], int, int]:
    """A tiling of levels ``first_level``.. only, each tile at the same position modulo 8 (the
    network's output stride) as in dlib's full tiling, so that windows land on the same
    pixels; tiles at least ``padding`` apart (dlib's packing, or one column where that packs
    them closer). Levels dlib drops are dropped too."""
    full, _, _ = tiled_layout(sizes, padding, outer_padding)
    sub = sizes[first_level : len(full)]
    slack = OUT_STRIDE - 1

    def aligned(rects):
        out = []
        for i, (l, t, r, b) in enumerate(rects):
            dx = (full[first_level + i][0] - l) % OUT_STRIDE
            dy = (full[first_level + i][1] - t) % OUT_STRIDE
            out.append((l + dx, t + dy, r + dx, b + dy))
        return out

    rects, n_rows, n_cols = tiled_layout(sub, padding + slack, outer_padding, keep_gap=True)
    out = aligned(rects)
    if len(out) < len(sub) or _min_gap(out) < padding:  # one column instead
        rects, y = [], outer_padding
        for h, w in sub:
            rects.append((outer_padding, y, outer_padding + w - 1, y + h - 1))
            y += h + padding + slack
        out = aligned(rects)
        n_rows, n_cols = y - padding - slack + outer_padding, sub[0][1] + 2 * outer_padding
    return out, n_rows + slack, n_cols + slack


def pyramid_layout(nr: int, nc: int, padding: int, outer_padding: int, first_level: int = 0):
    """The pyramid of an ``nr`` x ``nc`` image and where its tiles go: ``(sizes, first_level,
    rects, n_rows, n_cols)``, ``first_level`` clamped to the last level; levels from
    ``first_level`` on are tiled (all of them by :func:`tiled_layout`, else :func:`coarse_layout`)."""
    sizes = pyramid_sizes(nr, nc)
    first_level = min(first_level, len(sizes) - 1)
    if first_level == 0:
        rects, n_rows, n_cols = tiled_layout(sizes, padding, outer_padding)
    else:
        rects, n_rows, n_cols = coarse_layout(sizes, first_level, padding, outer_padding)
    return sizes, first_level, rects, n_rows, n_cols


def tiled_pyramid(
    img: np.ndarray,
    mean: tuple[float, float, float],
    padding: int = 10,
    outer_padding: int = 11,
    first_level: int = 0,
    canvas: np.ndarray | None = None,
) -> TiledInput:
    """input_rgb_image_pyramid::to_tensor: every level made from the previous one with dlib's
    bilinear resize, tiled into one zero-padded image. ``img``: RGB uint8 (H, W, 3) or pixel
    planes (3, H, W) float32. ``first_level > 0``: the finer levels are computed but only
    levels ``first_level``.. are tiled (:func:`coarse_layout`). ``canvas``: a buffer from an
    earlier call with the same image size and first_level, to reuse (only tiles are written)."""
    nr, nc = img.shape[:2] if img.dtype == np.uint8 else img.shape[1:]
    sizes, first_level, rects, n_rows, n_cols = pyramid_layout(nr, nc, padding, outer_padding, first_level)
    if canvas is None or canvas.shape != (1, 3, n_rows, n_cols):
        canvas = np.zeros((1, 3, n_rows, n_cols), F32)
    if not rects:
        return TiledInput(canvas, [], [])
    m = np.asarray(mean, F32)
    t = canvas[0]
    l, tp, r, b = rects[0]
    if first_level == 0:
        _to_planes_normalised(img, m, t[:, tp : b + 1, l : r + 1])
    else:
        level = np.empty((3, nr, nc), F32)
        _to_planes_normalised(img, m, level)
        for k in range(1, first_level + 1):
            level = resize_planes(level, np.empty((3, *sizes[k]), F32))
        t[:, tp : b + 1, l : r + 1] = level
    for i in range(1, len(rects)):
        pl, pt, pr, pb = rects[i - 1]
        l, tp, r, b = rects[i]
        resize_planes(t[:, pt : pb + 1, pl : pr + 1], t[:, tp : b + 1, l : r + 1])
    return TiledInput(canvas, rects, list(range(first_level, first_level + len(rects))))


# ---------------------------------------------------------------------------------------------
# Score map -> boxes (loss_mmod_::to_label)


def _nearest_rect(rects: list[tuple[int, int, int, int]], x: int, y: int) -> int:
    best, best_d = 0, math.inf
    for i, (l, t, r, b) in enumerate(rects):
        if l <= x <= r and t <= y <= b:
            return i
        nx = min(max(x, l), r)
        ny = min(max(y, t), b)
        d = math.hypot(nx - x, ny - y)
        if d < best_d:
            best, best_d = i, d
    return best


def _point_up(v: float, levels: int) -> float:
    for _ in range(levels):
        v = v * (6 / (6 - 1.0)) + 0.3
    return v


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], iou: float, covered: float) -> bool:
    """dlib test_box_overlap on inclusive integer rectangles."""
    il, it, ir, ib = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    if ir < il or ib < it:
        return False
    inner = float((ir - il + 1) * (ib - it + 1))
    outer = float((max(a[2], b[2]) - min(a[0], b[0]) + 1) * (max(a[3], b[3]) - min(a[1], b[1]) + 1))
    area_a = float((a[2] - a[0] + 1) * (a[3] - a[1] + 1))
    area_b = float((b[2] - b[0] + 1) * (b[3] - b[1] + 1))
    return inner / outer > iou or inner / area_a > covered or inner / area_b > covered


def score_map_to_boxes(
    scores: np.ndarray,
    tiled: TiledInput,
    window: tuple[int, int],
    nms_iou: float,
    nms_covered: float,
    threshold: float = 0.0,
) -> list[tuple[tuple[float, float, float, float], float]]:
    """Windows scoring above ``threshold``, in image space (drectangle), after NMS."""
    rr, cc = np.nonzero(scores > threshold)
    if rr.size == 0:
        return []
    vals = scores[rr, cc]
    order = np.argsort(-vals, kind="stable")
    ww, wh = window[0] - 1, window[1] - 1
    kept: list[tuple[tuple[float, float, float, float], float]] = []
    kept_int: list[tuple[int, int, int, int]] = []
    for j in order:
        px, py = OUT_STRIDE * int(cc[j]) + OUT_OFFSET, OUT_STRIDE * int(rr[j]) + OUT_OFFSET
        l, t, r, b = px - ww / 2, py - wh / 2, px + ww / 2, py + wh / 2
        k = _nearest_rect(tiled.rects, _round((l + r) / 2), _round((t + b) / 2))
        ox, oy = tiled.rects[k][0], tiled.rects[k][1]
        lev = tiled.levels[k]
        box = (_point_up(l - ox, lev), _point_up(t - oy, lev), _point_up(r - ox, lev), _point_up(b - oy, lev))
        ibox = tuple(_round(v) for v in box)
        if any(_overlaps(q, ibox, nms_iou, nms_covered) for q in kept_int):
            continue
        kept.append((box, float(vals[j])))
        kept_int.append(ibox)
    return kept


# ---------------------------------------------------------------------------------------------


def auto_upsample(min_face: int | None, window: int = 80) -> int:
    """Upsampling so that faces of ``min_face`` pixels reach the 80-pixel window (to within
    10%): 0 for ``min_face`` >= 73 px or None, 1 from 37 px, 2 from 19, 3 below."""
    if min_face is None:
        return 0
    n = 0
    while window / (2**n) > min_face * 1.1 and n < 3:
        n += 1
    return n


class MmodDetector:
    """dlib's CNN face detector (``cnn_face_detection_model_v1``) on onnxruntime.

    ``upsample``: dlib's ``upsample_num_times`` (pyramid_up passes); the smallest faces found
    are about 80 px at 0, 40 at 1, 20 at 2. ``None``: chosen from ``min_face``
    (:func:`auto_upsample`). ``min_face``: drop boxes with a side below it and skip the pyramid
    levels that only find smaller faces (faster; tiling then differs from dlib's, so boxes and
    scores can differ slightly). ``threads``: onnxruntime intra-op threads (default: all
    cores). ``network``: the score-map runner (default :class:`OnnxMmodNetwork`; see
    ``torch_mmod.py``). Reuses one input buffer per image size: one ``detect`` at a time per
    instance.
    """

    def __init__(self, upsample: int | None = 0, min_face: int | None = None, threads: int | None = None,
                 network=None):
        if upsample is None:
            upsample = auto_upsample(min_face)
        if upsample < 0:
            raise ValueError("upsample must be >= 0")
        if min_face is not None and min_face < 1:
            raise ValueError("min_face must be >= 1")
        self.upsample = int(upsample)
        self.min_face = min_face
        net = mmod_network()
        self.mean = tuple(float(v) for v in net.input["mean"])
        self.padding = int(net.input["padding"])
        self.outer_padding = int(net.input["outer_padding"])
        win = net.loss["detector_windows"][0]
        self.window = (int(win["width"]), int(win["height"]))
        self.nms_iou = float(net.loss["nms_iou"])
        self.nms_covered = float(net.loss["nms_percent_covered"])
        self.network = network if network is not None else OnnxMmodNetwork(threads)
        self.session = getattr(self.network, "session", None)
        self.runtime = getattr(self.network, "runtime", type(self.network).__name__)
        self._canvas: tuple[tuple, np.ndarray] | None = None  # (image shape, first level), buffer
        self._lock = threading.Lock()

    def first_level(self) -> int:
        """Finest pyramid level needed for ``min_face`` (0 without it)."""
        if not self.min_face:
            return 0
        # A level-k window covers about 80 * 1.2**k pixels of the upsampled image; keep one
        # level below the one matching min_face so that faces at the limit are still scored.
        side = self.min_face * (2.0**self.upsample)
        k = math.floor(math.log(side / self.window[0]) / math.log(1.2)) - 1
        return max(0, k)

    def tiled_input(self, image: np.ndarray) -> TiledInput:
        """The upsampled, tiled pyramid tensor dlib's network sees for ``image`` (RGB uint8)."""
        img = upsampled(image, self.upsample)
        key = (img.shape, self.first_level())
        canvas = self._canvas[1] if self._canvas is not None and self._canvas[0] == key else None
        tiled = tiled_pyramid(img, self.mean, self.padding, self.outer_padding, key[1], canvas)
        self._canvas = (key, tiled.tensor)
        return tiled

    def scores(self, tiled: TiledInput) -> np.ndarray:
        """The network's score map for a tiled input, (rows, cols) float32."""
        return self.network(tiled.tensor)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 image, best first (grey is replicated, as dlib does; RGBA's
        alpha channel is dropped, where dlib refuses it)."""
        from .images import as_rgb

        img = as_rgb(image)
        if min(img.shape[:2]) < 8:  # a tiled pyramid this small has no level
            return []
        with self._lock:
            tiled = self.tiled_input(img)
            if not tiled.rects:
                return []
            boxes = score_map_to_boxes(self.scores(tiled), tiled, self.window, self.nms_iou, self.nms_covered)
        return self.to_detections(boxes)

    def to_detections(self, boxes: list[tuple[tuple[float, float, float, float], float]]) -> list[Detection]:
        """Boxes of the (upsampled) image from ``score_map_to_boxes`` as detections in the image."""
        out = []
        for box, score in boxes:
            ibox = tuple(_round(v) for v in box)
            if self.upsample:
                ibox = tuple(_round(v) for v in rect_down2(ibox, self.upsample))
            d = Detection(ibox, score)
            if self.min_face and min(d.width, d.height) < self.min_face:
                continue
            out.append(d)
        return out

    __call__ = detect
