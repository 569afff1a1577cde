"""The descriptor ResNet on PyTorch (the ``torch`` and ``gpu`` extras).

Built from the same :func:`descriptor_plan` as the ONNX graph. On CPUs with AMX, bf16 runs
through oneDNN; on NVIDIA GPUs fp32 (TF32 off, for parity with dlib) or fp16, optionally
compiled. Install with ``pip install 'openlfr[torch]'`` (CPU) or ``'openlfr[gpu]'``.
"""

from __future__ import annotations

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("the torch runtime needs PyTorch: pip install 'openlfr[torch]'") from e

from .descriptor import CHIP_SIZE, DescriptorPlan, DescriptorRuntime, descriptor_plan
from .dnn_reader import load_network
from .models import DESCRIPTOR
from .runtime import torch_device

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class ResNetDescriptor(torch.nn.Module):
    """dlib's ResNet as a torch module: uint8 NHWC chips in, (N, 128) float32 out."""

    def __init__(self, plan: DescriptorPlan):
        super().__init__()
        self.register_buffer("mean", torch.tensor(plan.mean, dtype=torch.float32).view(1, 3, 1, 1))

        def conv(c):
            m = torch.nn.Conv2d(c.weight.shape[1], c.weight.shape[0], c.weight.shape[2], c.stride, c.pad)
            m.weight.data = torch.from_numpy(c.weight.copy())
            m.bias.data = torch.from_numpy(c.bias.copy())
            return m

        self.stem = conv(plan.stem)
        self.convs = torch.nn.ModuleList()
        self.down = []
        for b in plan.blocks:
            self.convs.append(torch.nn.ModuleList([conv(b.conv1), conv(b.conv2)]))
            self.down.append(b.down)
        self.register_buffer("fc", torch.from_numpy(plan.fc.copy()))

    @staticmethod
    def _pad_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        c, h, w = (max(x, y) for x, y in zip(a.shape[1:], b.shape[1:]))

        def pad(t):
            dc, dh, dw = c - t.shape[1], h - t.shape[2], w - t.shape[3]
            return F.pad(t, (0, dw, 0, dh, 0, dc)) if dc or dh or dw else t

        return pad(a) + pad(b)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = chips.permute(0, 3, 1, 2).float()
        x = ((x - self.mean) * (1 / 256)).to(self.stem.weight.dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        for (c1, c2), down in zip(self.convs, self.down):
            y = c2(F.relu(c1(x)))
            s = F.avg_pool2d(x, 2, 2) if down else x
            x = F.relu(y + s if y.shape == s.shape else self._pad_add(y, s))
        x = x.float().mean(dim=(2, 3))
        return x @ self.fc


GRAPH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def graph_bucket(n: int, sizes: tuple[int, ...] = GRAPH_SIZES) -> int:
    """The smallest captured batch size that holds ``n`` chips (the largest when none does)."""
    for s in sizes:
        if s >= n:
            return s
    return sizes[-1]


class TorchDescriptorModel(DescriptorRuntime):
    """Descriptor runtime on PyTorch: ``device`` cpu or cuda, ``precision`` fp32, bf16 or fp16.

    ``compile``: ``torch.compile`` the network (True, or a mode: ``"max-autotune"``,
    ``"reduce-overhead"``...). ``cuda_graphs``: on CUDA, capture one CUDA graph per batch
    size (the powers of two below ``batch_size``, and ``batch_size``: ``GRAPH_SIZES`` for the
    default 1,024) on first use and replay it, a batch padded up to the next captured size
    (also without graphs on CUDA, so cuDNN sees few shapes): removes the per-kernel launch cost that dominates small
    batches (the network has ~60 kernels). Graph replays share static buffers: one call at a
    time (a lock; the live runner's shared embedder makes one anyway).
    """

    def __init__(
        self,
        precision: str = "fp32",
        device: str | None = None,
        threads: int | None = None,
        batch_size: int | None = None,
        compile: bool | str = False,
        cuda_graphs: bool = False,
    ):
        if precision not in DTYPES:
            raise ValueError(f"precision must be one of {', '.join(DTYPES)}")
        self.device = torch_device(device)
        if self.device.type == "cuda":
            torch.backends.cudnn.allow_tf32 = False  # TF32 moves descriptors by ~3e-4
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.benchmark = True  # fixed chip size: pick the fastest kernels once
        elif threads:
            torch.set_num_threads(threads)
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.precision = precision
        self.runtime = f"torch-{self.device.type}"
        self.batch_size = batch_size or (1024 if self.device.type == "cuda" else 32)
        net = ResNetDescriptor(descriptor_plan(load_network(DESCRIPTOR))).eval()
        net = net.to(self.device, memory_format=torch.channels_last)
        if precision != "fp32":
            net.stem.to(DTYPES[precision])
            net.convs.to(DTYPES[precision])
        self.compiled = bool(compile)
        if compile:
            net = torch.compile(net, **({"mode": compile} if isinstance(compile, str) else {}))
        self.net = net
        self.cuda_graphs = bool(cuda_graphs)
        # powers of two below the batch size, then the batch size (GRAPH_SIZES for the default 1,024)
        self.graph_sizes = tuple(2**k for k in range(self.batch_size.bit_length()) if 2**k < self.batch_size) + (self.batch_size,)
        self._graphs: dict[int, tuple] = {}
        self._graph_pool = None
        self._pinned: torch.Tensor | None = None
        import threading

        self._graph_lock = threading.Lock()

    def _upload(self, batch: np.ndarray, size: int | None = None) -> torch.Tensor:
        """Chips to the device; on CUDA through a pinned (page-locked) host buffer, which copies at
        full bus speed. ``size`` >= len(batch): send that many rows (the rows after the batch are
        left-overs, whose results the caller drops). Callers hold ``_graph_lock``: the buffer is
        reused once the results of the previous batch are back (which waits for its copy too)."""
        if self.device.type != "cuda":
            return torch.from_numpy(batch)
        n = len(batch)
        size = max(n, size or n)
        if self._pinned is None or self._pinned.shape[0] < size:
            self._pinned = torch.empty((max(size, self.batch_size), CHIP_SIZE, CHIP_SIZE, 3), dtype=torch.uint8).pin_memory()
        self._pinned[:n].numpy()[...] = batch
        return self._pinned[:size].to(self.device, non_blocking=True)

    @torch.inference_mode()
    def _run_batch(self, batch: np.ndarray) -> np.ndarray:
        if self.cuda_graphs:
            return self._run_graph(batch)
        if self.device.type != "cuda":
            return self.net(torch.from_numpy(batch)).float().cpu().numpy()
        # Batches padded to the sizes of GRAPH_SIZES: cuDNN tunes its kernels once per shape
        # (benchmark mode), and the live run's batches come in every size.
        n = len(batch)
        with self._graph_lock:  # one pinned buffer
            return self.net(self._upload(batch, graph_bucket(n, self.graph_sizes)))[:n].float().cpu().numpy()

    # -- CUDA graphs --------------------------------------------------------------------------

    def _capture(self, size: int) -> tuple:
        static_in = torch.zeros((size, CHIP_SIZE, CHIP_SIZE, 3), dtype=torch.uint8, device=self.device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph (cuDNN picks its kernels)
            for _ in range(2):
                self.net(static_in)
        torch.cuda.current_stream().wait_stream(side)
        if self._graph_pool is None:
            self._graph_pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._graph_pool):
            static_out = self.net(static_in).float()
        return static_in, static_out, graph

    def _run_graph(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        size = graph_bucket(n, self.graph_sizes)
        with self._graph_lock:
            if size not in self._graphs:
                self._graphs[size] = self._capture(size)
            static_in, static_out, graph = self._graphs[size]
            static_in[:n].copy_(self._upload(batch), non_blocking=True)
            graph.replay()
            return static_out[:n].cpu().numpy()


def precision_report(chips: np.ndarray, precision: str = "fp16", device: str | None = None,
                     reference: DescriptorRuntime | None = None, threshold: float = 0.6) -> dict:
    """How far ``precision`` (fp16, bf16) moves descriptors from fp32 on the same chips.

    Returns max and mean absolute element error, max and mean L2 distance between the two
    descriptors of a chip (and relative to the fp32 descriptor's norm), the largest change of
    a pairwise distance between chips, and how many pairs change side of ``threshold`` (the
    decision they would make). ``reference``: the fp32 runtime to compare with (default:
    torch fp32 on the same device, TF32 off).
    """
    chips = np.asarray(chips)
    ref_model = reference or TorchDescriptorModel("fp32", device=device)
    low_model = TorchDescriptorModel(precision, device=device)
    ref = ref_model.compute(chips).astype(np.float64)
    low = low_model.compute(chips).astype(np.float64)
    diff = low - ref
    l2 = np.linalg.norm(diff, axis=1)
    norms = np.linalg.norm(ref, axis=1)
    iu = np.triu_indices(len(chips), 1)
    d_ref = np.linalg.norm(ref[:, None] - ref[None], axis=-1)[iu]
    d_low = np.linalg.norm(low[:, None] - low[None], axis=-1)[iu]
    return {
        "precision": precision,
        "device": str(low_model.device),
        "reference": getattr(ref_model, "runtime", "torch") + "-" + getattr(ref_model, "precision", "fp32"),
        "chips": int(len(chips)),
        "max_abs": float(np.abs(diff).max()) if diff.size else 0.0,
        "mean_abs": float(np.abs(diff).mean()) if diff.size else 0.0,
        "max_l2": float(l2.max()) if len(l2) else 0.0,
        "mean_l2": float(l2.mean()) if len(l2) else 0.0,
        "max_rel_l2": float((l2 / np.maximum(norms, 1e-12)).max()) if len(l2) else 0.0,
        "max_pair_distance_change": float(np.abs(d_low - d_ref).max()) if len(d_ref) else 0.0,
        "pairs": int(len(d_ref)),
        "pairs_changing_decision": int(((d_ref < threshold) != (d_low < threshold)).sum()),
        "threshold": threshold,
    }


__all__ = ["TorchDescriptorModel", "ResNetDescriptor", "CHIP_SIZE", "precision_report", "graph_bucket", "GRAPH_SIZES"]
