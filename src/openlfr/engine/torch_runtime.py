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


class TorchDescriptorModel(DescriptorRuntime):
    """Descriptor runtime on PyTorch: ``device`` cpu or cuda, ``precision`` fp32, bf16 or fp16."""

    def __init__(
        self,
        precision: str = "fp32",
        device: str | None = None,
        threads: int | None = None,
        batch_size: int | None = None,
        compile: bool = False,
    ):
        if precision not in DTYPES:
            raise ValueError(f"precision must be one of {', '.join(DTYPES)}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda":
            torch.backends.cudnn.allow_tf32 = False  # TF32 moves descriptors by ~3e-4
            torch.backends.cuda.matmul.allow_tf32 = False
        elif threads:
            torch.set_num_threads(threads)
        self.precision = precision
        self.runtime = f"torch-{self.device.type}"
        self.batch_size = batch_size or (1024 if self.device.type == "cuda" else 32)
        net = ResNetDescriptor(descriptor_plan(load_network(DESCRIPTOR))).eval()
        net = net.to(self.device, memory_format=torch.channels_last)
        if precision != "fp32":
            net.stem.to(DTYPES[precision])
            net.convs.to(DTYPES[precision])
        self.net = torch.compile(net) if compile else net

    @torch.inference_mode()
    def _run_batch(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.device, non_blocking=True)
        return self.net(x).float().cpu().numpy()


__all__ = ["TorchDescriptorModel", "ResNetDescriptor", "CHIP_SIZE"]
