"""Which runtime runs a network: the one choice shared by every factory of the engine.

``auto`` means torch on a CUDA GPU (when the torch/gpu extra is installed and a driver is
present), else onnxruntime on the CPU; ``$OPENLFR_RUNTIME`` (onnx | torch | auto) overrides
``auto``. The detector and descriptor factories both ask ``choose_runtime``; a torch network
(and the torch search index) takes its device from ``torch_device``.
"""

from __future__ import annotations

import os

RUNTIME_ENV = "OPENLFR_RUNTIME"
RUNTIMES = ("onnx", "torch")


def cuda_available() -> bool:
    """Whether PyTorch is installed and sees a CUDA GPU (without an NVIDIA driver, torch is not
    even imported: that takes a second or two)."""
    if not (os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def choose_runtime(requested: str = "auto", precision: str = "fp32") -> str:
    """``onnx`` or ``torch`` for a ``requested`` runtime (``auto``, ``onnx`` or ``torch``).

    ``auto`` reads ``$OPENLFR_RUNTIME``, then picks torch on a CUDA GPU, or when a precision
    other than fp32 is asked for (onnxruntime's CPU runtime is fp32 only), else onnx."""
    runtime = requested or "auto"
    if runtime == "auto":
        runtime = os.environ.get(RUNTIME_ENV, "auto") or "auto"
    if runtime == "auto":
        runtime = "torch" if (precision != "fp32" or cuda_available()) else "onnx"
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r} (onnx, torch, auto)")
    return runtime


def torch_device(device: str | None = None):
    """The ``torch.device`` a torch network runs on: ``device`` when given (cpu, cuda, cuda:N),
    else CUDA when torch sees a GPU, else the CPU."""
    import torch

    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
