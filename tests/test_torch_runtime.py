"""The torch runtime (extra): same plan as the ONNX graph, parity in fp32, bounded bf16 error."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from openlfr.engine.descriptor import DescriptorModel, make_descriptor  # noqa: E402
from openlfr.engine.torch_runtime import TorchDescriptorModel  # noqa: E402


@pytest.fixture(scope="module")
def chips(astronaut):
    import cv2

    rng = np.random.default_rng(0)
    base = cv2.resize(astronaut[20:220, 150:330], (150, 150))
    return np.stack([np.clip(base.astype(int) + rng.integers(-30, 30, base.shape), 0, 255).astype(np.uint8) for _ in range(6)])


def test_fp32_matches_onnx(chips):
    ref = DescriptorModel().compute(chips)
    ours = TorchDescriptorModel("fp32", device="cpu").compute(chips)
    assert np.abs(ours - ref).max() < 1e-4


def test_bf16_close(chips):
    ref = DescriptorModel().compute(chips)
    ours = TorchDescriptorModel("bf16", device="cpu").compute(chips)
    assert np.linalg.norm(ours - ref, axis=1).max() < 0.05  # far below the 0.6 decision distance


def test_factory():
    assert make_descriptor("onnx").runtime == "onnxruntime-cpu"
    assert make_descriptor("torch", "bf16").precision == "bf16"
    with pytest.raises(ValueError, match="fp32 only"):
        make_descriptor("onnx", "bf16")
    with pytest.raises(ValueError, match="unknown"):
        make_descriptor("tpu")
