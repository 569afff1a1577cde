"""dlib's MMOD face detector network on PyTorch (the ``torch`` / ``gpu`` extras): CUDA when present.

The network is built from the same parsed layers as the ONNX graph (``mmod.mmod_convs``:
affine folded into the convolutions); everything around it is ``mmod.py``'s: the tiled
pyramid, the window mapping and dlib's non-max suppression (``MmodDetector(network=...)``).

- :class:`TorchMmodNetwork`: tiled input (N, 3, H, W) -> score maps, fp32 (TF32 off on CUDA,
  so scores match the onnxruntime path to float rounding), fp16 or bf16 (channel counts padded
  45 -> 48 for tensor cores), channels-last, optionally ``torch.compile``'d.
- :class:`TorchMmodDetector`: the detector with that network. ``pyramid='exact'`` builds the
  pyramid in numpy with dlib's exact arithmetic (as ``MmodDetector``; same boxes as the
  onnxruntime detector); ``pyramid='device'`` builds it on the device with
  ``F.interpolate(align_corners=True)`` (dlib's sampling grid, float rounding of its own:
  scores move by ~1e-5, boxes stay) so that a GPU is not held back by the CPU;
  ``'auto'``: ``device`` on CUDA, ``exact`` on the CPU. Thread-safe without a lock (each
  call builds its own canvas), and :meth:`~TorchMmodDetector.detect_batch` runs several frames
  of the same size in one network call; ``batching.BatchingDetector`` gathers the frames of
  many camera threads into such calls.

``make_detector('cnn', runtime='auto')`` picks this detector when torch sees a CUDA GPU.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("the torch MMOD runtime needs PyTorch: pip install 'openlfr[torch]'") from e

from .batching import BatchingDetector  # noqa: F401 (re-exported: it lived here)
from .detection import Detection
from .mmod import (
    F32,
    MmodDetector,
    TiledInput,
    _pad_channels,
    mmod_convs,
    mmod_network,
    pyramid_layout,
    score_map_to_boxes,
    tiled_pyramid,
    upsampled,
)
from .runtime import torch_device

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class MmodNet(torch.nn.Module):
    """The seven convolutions (ReLU after the first six): (N, 3, H, W) float32 -> (N, 1, h, w) float32."""

    def __init__(self, pad_to: int = 1):
        super().__init__()
        convs = mmod_convs(mmod_network())
        self.convs = torch.nn.ModuleList()
        self.relu: list[bool] = []
        c_in = 3
        for i, c in enumerate(convs):
            last = i == len(convs) - 1
            c_out = c.weight.shape[0] if last else -(-c.weight.shape[0] // pad_to) * pad_to
            w, b = _pad_channels(c.weight, c.bias, c_in, c_out)
            m = torch.nn.Conv2d(c_in, c_out, w.shape[2:], c.stride, c.pad)
            m.weight.data = torch.from_numpy(w)
            m.bias.data = torch.from_numpy(b)
            self.convs.append(m)
            self.relu.append(c.relu)
            c_in = c_out

    @staticmethod
    def _conv_out(conv: torch.nn.Conv2d, rows, cols):
        """Output rows and columns of ``conv`` for inputs of ``rows`` x ``cols`` (ints or tensors)."""
        (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
        return (rows + 2 * ph - kh) // sh + 1, (cols + 2 * pw - kw) // sw + 1

    def out_size(self, rows: int, cols: int) -> tuple[int, int]:
        """Score-map size of an input of ``rows`` x ``cols``."""
        for conv in self.convs:
            rows, cols = self._conv_out(conv, rows, cols)
        return rows, cols

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``valid``: (N, 2) int64 rows and columns of each input that are its own, the rest being
        zero padding added to share a shape (see :func:`padded_canvas`). Each layer's output
        beyond the part computed from the valid input is zeroed, as the convolutions' own zero
        padding would be there without the extra rows: the valid part equals the unpadded run."""
        x = x.to(self.convs[0].weight.dtype).contiguous(memory_format=torch.channels_last)
        for conv, relu in zip(self.convs, self.relu):
            x = conv(x)
            if relu:
                x = F.relu(x)
            if valid is not None:
                valid = torch.stack(self._conv_out(conv, valid[:, 0], valid[:, 1]), 1)
                rows = torch.arange(x.shape[2], device=x.device)[None, :] < valid[:, :1]  # (N, h)
                cols = torch.arange(x.shape[3], device=x.device)[None, :] < valid[:, 1:]  # (N, w)
                x = x * (rows[:, None, :, None] & cols[:, None, None, :]).to(x.dtype)
        return x.float()


_tuning_lock = threading.Lock()
_tuning_off_users = 0
_tuning_saved = True


@contextmanager
def cudnn_tuning_off():
    """cuDNN's benchmark mode (tune kernels once per input shape) off while inside, for inputs
    whose shapes keep changing; shared by threads: the flag comes back when the last one leaves."""
    global _tuning_off_users, _tuning_saved
    with _tuning_lock:
        if _tuning_off_users == 0:
            _tuning_saved = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = False
        _tuning_off_users += 1
    try:
        yield
    finally:
        with _tuning_lock:
            _tuning_off_users -= 1
            if _tuning_off_users == 0:
                torch.backends.cudnn.benchmark = _tuning_saved


class TorchMmodNetwork:
    """Score maps on PyTorch: ``net(tensor (1, 3, H, W)) -> (h, w)`` numpy, the ``network=`` of
    ``MmodDetector``; ``run_batch`` for (N, 3, H, W) -> (N, h, w)."""

    def __init__(self, device: str | None = None, precision: str = "fp32", compile: bool | str = False,
                 threads: int | None = None, cudnn_tuning: bool = True):
        if precision not in DTYPES:
            raise ValueError(f"precision must be one of {', '.join(DTYPES)}")
        self.device = torch_device(device)
        if self.device.type == "cuda":
            torch.backends.cudnn.allow_tf32 = False  # fp32 scores as onnxruntime's
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.benchmark = True  # camera frames keep their size: tune once per shape
        elif threads:
            torch.set_num_threads(threads)
        self.precision = precision
        self.cudnn_tuning = cudnn_tuning  # False: cuDNN's heuristic kernels, no tuning per new input shape
        self.runtime = f"torch-{self.device.type}"
        net = MmodNet(pad_to=16 if precision != "fp32" or self.device.type == "cuda" else 1).eval()
        net = net.to(self.device, memory_format=torch.channels_last)
        if precision != "fp32":
            net.convs.to(DTYPES[precision])
        self.out_size = net.out_size
        if compile:
            net = torch.compile(net, dynamic=True, **({"mode": compile} if isinstance(compile, str) else {}))
        self.net = net

    @torch.inference_mode()
    def run_batch(self, tensor, valid: list[tuple[int, int]] | None = None) -> np.ndarray:
        """Score maps of (N, 3, H, W) inputs; ``valid``: each input's own (rows, cols) when it was
        padded to a shared shape (its score map is then exact on its own part)."""
        x = tensor if isinstance(tensor, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(tensor, F32))
        v = None if valid is None else torch.tensor(valid, dtype=torch.int64, device=self.device)
        if self.cudnn_tuning or self.device.type != "cuda":
            return self.net(x.to(self.device, non_blocking=True), v)[:, 0].cpu().numpy()
        with cudnn_tuning_off():
            return self.net(x.to(self.device, non_blocking=True), v)[:, 0].cpu().numpy()

    def __call__(self, tensor) -> np.ndarray:
        return self.run_batch(tensor)[0]


# ---------------------------------------------------------------------------------------------
# The tiled pyramid on the device


def _resize(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """dlib's bilinear ``resize_image`` sampling grid (corners to corners) on (C, h, w)."""
    return F.interpolate(x[None], size=(rows, cols), mode="bilinear", align_corners=True)[0]


def device_tiled_pyramid(img: torch.Tensor, mean: tuple[float, float, float], padding: int, outer_padding: int,
                         first_level: int = 0) -> TiledInput:
    """``mmod.tiled_pyramid`` on the device: ``img`` is (3, H, W) float32 pixel values."""
    nr, nc = img.shape[1:]
    sizes, first_level, rects, n_rows, n_cols = pyramid_layout(nr, nc, padding, outer_padding, first_level)
    canvas = torch.zeros((1, 3, n_rows, n_cols), dtype=torch.float32, device=img.device)
    if not rects:
        return TiledInput(canvas, [], [])
    m = torch.tensor(mean, dtype=torch.float32, device=img.device).view(3, 1, 1)
    level = (img - m) * (1 / 256)
    for k in range(1, first_level + 1):
        level = _resize(level, *sizes[k])
    t = canvas[0]
    l, tp, r, b = rects[0]
    t[:, tp : b + 1, l : r + 1] = level
    for i in range(1, len(rects)):
        pl, pt, pr, pb = rects[i - 1]
        l, tp, r, b = rects[i]
        t[:, tp : b + 1, l : r + 1] = _resize(t[:, pt : pb + 1, pl : pr + 1], b - tp + 1, r - l + 1)
    return TiledInput(canvas, rects, list(range(first_level, first_level + len(rects))))


SHAPE_STEP = 64


def padded_canvas(tiled: TiledInput, step: int) -> TiledInput:
    """The tiled canvas padded with zeros on the right and bottom up to multiples of ``step``;
    the tiles stay where they are. Run it with its own size as ``valid`` (``MmodNet.forward``)."""
    x = tiled.tensor
    h, w = x.shape[-2:]
    ph, pw = -h % step, -w % step
    if not (ph or pw):
        return tiled
    if isinstance(x, torch.Tensor):
        x = F.pad(x, (0, pw, 0, ph))
    else:
        x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)))
    return TiledInput(x, tiled.rects, tiled.levels)


class TorchMmodDetector(MmodDetector):
    """``MmodDetector`` with the network on PyTorch (see the module docstring)."""

    def __init__(self, upsample: int | None = 0, min_face: int | None = None, device: str | None = None,
                 precision: str = "fp32", compile: bool | str = False, pyramid: str = "auto", threads: int | None = None,
                 shape_step: int | str | None = "auto", cudnn_tuning: bool = True):
        network = TorchMmodNetwork(device, precision, compile, threads, cudnn_tuning)
        super().__init__(upsample=upsample, min_face=min_face, threads=threads, network=network)
        if pyramid == "auto":
            pyramid = "device" if network.device.type == "cuda" else "exact"
        if pyramid not in ("exact", "device"):
            raise ValueError("pyramid is 'exact', 'device' or 'auto'")
        self.pyramid = pyramid
        # The live scheduler scans windows of every size; cuDNN tunes its kernels once per input
        # shape, so on CUDA each canvas is padded (zeros, right and bottom) up to a multiple of
        # ``shape_step`` pixels: few shapes, tuned once, and windows of similar size batched.
        if shape_step == "auto":
            shape_step = SHAPE_STEP if network.device.type == "cuda" else None
        self.shape_step = shape_step
        self.device = network.device
        self.precision = precision

    # -- inputs -----------------------------------------------------------------------------

    def tiled_input(self, image: np.ndarray) -> TiledInput:
        if self.pyramid == "exact":
            return self._exact_input(image)
        x = torch.from_numpy(np.require(image, requirements=["C", "W"])).to(self.device, non_blocking=True)
        x = x.permute(2, 0, 1).float()
        for _ in range(self.upsample):  # dlib's pyramid_up: 2h+1 x 2w+2, rgb_pixel (truncated)
            x = torch.trunc(_resize(x, 2 * x.shape[1] + 1, 2 * x.shape[2] + 2))
        return device_tiled_pyramid(x, self.mean, self.padding, self.outer_padding, self.first_level())

    def _exact_input(self, image: np.ndarray) -> TiledInput:
        """The numpy pyramid (dlib's arithmetic) in a fresh canvas: no state shared between threads."""
        img = upsampled(image, self.upsample)
        return tiled_pyramid(img, self.mean, self.padding, self.outer_padding, self.first_level())

    # -- detection --------------------------------------------------------------------------

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detect_batch([image])[0]

    __call__ = detect

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Faces in each image; images whose tiled inputs have the same size share one network call."""
        from .images import as_rgb

        out: list[list[Detection]] = [[] for _ in images]
        groups: dict[tuple, list[tuple[int, TiledInput]]] = {}
        for i, image in enumerate(images):
            img = as_rgb(image)
            if min(img.shape[:2]) < 8:
                continue
            tiled = self.tiled_input(img)
            size = tuple(tiled.tensor.shape[-2:])
            if self.shape_step:
                tiled = padded_canvas(tiled, self.shape_step)
            if tiled.rects:
                groups.setdefault(tuple(tiled.tensor.shape), []).append((i, tiled, size))
        for items in groups.values():
            if isinstance(items[0][1].tensor, torch.Tensor):
                batch = torch.cat([t.tensor for _, t, _ in items])
            else:
                batch = np.concatenate([t.tensor for _, t, _ in items])
            sizes = [size for _, _, size in items]
            padded = any(size != tuple(batch.shape[-2:]) for size in sizes)
            scores = self.network.run_batch(batch, sizes if padded else None)
            for (i, tiled, size), s in zip(items, scores):
                if padded:  # the score map of the input's own part (the rest is the padding's)
                    rows, cols = self.network.out_size(*size)
                    s = s[:rows, :cols]
                boxes = score_map_to_boxes(s, tiled, self.window, self.nms_iou, self.nms_covered)
                out[i] = self.to_detections(boxes)
        return out


__all__ = ["MmodNet", "TorchMmodNetwork", "TorchMmodDetector", "BatchingDetector", "device_tiled_pyramid"]
