"""dlib's face descriptor ResNet (128-D) on onnxruntime, built from dlib's own weights.

The ONNX graph is made from the parsed ``dlib_face_recognition_resnet_model_v1.dat``: it takes
150x150 RGB uint8 chips (N, 150, 150, 3) and returns the raw 128-D fc output (not normalised),
as dlib's ``compute_face_descriptor`` does. Options: flip averaging (the chip and its mirror)
and dlib-style jitter averaging.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import onnx

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # no telemetry (as openlfr/__init__ does), before onnxruntime loads
import onnxruntime as ort  # noqa: E402

from .dnn_reader import Layer, Network, load_network
from .models import DESCRIPTOR
from .onnx_graph import GraphBuilder, TensorProto, conv_out, fold_affine, helper
from .runtime import choose_runtime

CHIP_SIZE = 150
DIM = 128


@dataclass(frozen=True)
class ConvSpec:
    """A convolution with the following affine layer folded in; ``relu`` if one follows."""

    weight: np.ndarray  # OIHW float32
    bias: np.ndarray
    stride: tuple[int, int]
    pad: tuple[int, int]
    relu: bool


@dataclass(frozen=True)
class BlockSpec:
    """Residual block: conv1 (relu) -> conv2, plus the input (2x2/2 average-pooled when ``down``)."""

    conv1: ConvSpec
    conv2: ConvSpec
    down: bool


@dataclass(frozen=True)
class DescriptorPlan:
    """The ResNet's topology and folded weights, independent of any runtime."""

    mean: tuple[float, float, float]
    stem: ConvSpec  # followed by max-pool 3x3/2
    blocks: list[BlockSpec]
    fc: np.ndarray  # (256, 128)
    fc_bias: np.ndarray | None


def descriptor_plan(net: Network) -> DescriptorPlan:
    """Recover the topology from dlib's layer list (tag/skip layers are not in the file)."""
    if net.input.get("kind") != "rgb_sized":
        raise ValueError("not a descriptor network (input is not input_rgb_image_sized)")
    layers: list[Layer] = list(net.layers)
    i = 0

    def take(kind: str) -> Layer:
        nonlocal i
        if layers[i].kind != kind:
            raise ValueError(f"unexpected layer {layers[i].kind} at {i}, expected {kind}")
        i += 1
        return layers[i - 1]

    def conv_affine(relu: bool) -> ConvSpec:
        con, aff = take("con"), take("affine")
        w, b = fold_affine(con.params["weight"], con.params["bias"], aff.params["gamma"], aff.params["beta"])
        if relu:
            take("relu")
        return ConvSpec(w, b, tuple(con.params["stride"]), tuple(con.params["pad"]), relu)

    stem = conv_affine(relu=True)
    mp = take("max_pool")
    if mp.params["window"] != (3, 3) or mp.params["stride"] != (2, 2):
        raise ValueError("unexpected stem pooling")
    blocks = []
    while layers[i].kind == "con":
        c1, c2 = conv_affine(relu=True), conv_affine(relu=False)
        down = layers[i].kind == "avg_pool"
        if down:
            take("avg_pool")
        take("add_prev")
        take("relu")
        blocks.append(BlockSpec(c1, c2, down))
    if take("avg_pool").params["window"] != (0, 0):
        raise ValueError("expected a global average pool")
    fc = take("fc")
    if i != len(layers):
        raise ValueError("layers left after the fc layer")
    bias = fc.params.get("bias")
    return DescriptorPlan(tuple(net.input["mean"]), stem, blocks, fc.params["weight"].astype(np.float32), bias)


def build_descriptor_onnx(net: Network) -> onnx.ModelProto:
    """Translate the parsed ResNet into an ONNX graph (uint8 NHWC chips in, (N, 128) out)."""
    plan = descriptor_plan(net)
    g = GraphBuilder("dlib_face_recognition_resnet_model_v1")
    mean = np.array(plan.mean, np.float32).reshape(1, 3, 1, 1)
    x = g.node("Cast", ["chips"], to=TensorProto.FLOAT)
    x = g.node("Transpose", [x], perm=[0, 3, 1, 2])
    x = g.node("Sub", [x, g.const(mean, "mean")])
    x = g.node("Mul", [x, g.const(np.array(1 / 256, np.float32), "scale")])

    def conv(x: str, shape, c: ConvSpec):
        y = g.conv(x, c.weight, c.bias, c.stride, c.pad)
        if c.relu:
            y = g.relu(y)
        k = c.weight.shape[2]
        return y, (c.weight.shape[0], conv_out(shape[1], k, c.stride[0], c.pad[0]), conv_out(shape[2], k, c.stride[1], c.pad[1]))

    x, shape = conv(x, (3, CHIP_SIZE, CHIP_SIZE), plan.stem)
    x = g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2])
    shape = (shape[0], conv_out(shape[1], 3, 2, 0), conv_out(shape[2], 3, 2, 0))
    for block in plan.blocks:
        y, yshape = conv(x, shape, block.conv1)
        y, yshape = conv(y, yshape, block.conv2)
        shortcut, sshape = x, shape
        if block.down:
            shortcut = g.node("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
            sshape = (shape[0], conv_out(shape[1], 2, 2, 0), conv_out(shape[2], 2, 2, 0))
        # dlib's add_prev: sizes may differ; the sum takes the larger of each, zero-padded.
        target = tuple(max(a, b) for a, b in zip(yshape, sshape))
        x = g.relu(g.node("Add", [g.pad_to(y, yshape, target), g.pad_to(shortcut, sshape, target)]))
        shape = target
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)
    out = g.node("MatMul", [x, g.const(plan.fc, "fc")])
    if plan.fc_bias is not None:
        out = g.node("Add", [out, g.const(plan.fc_bias.astype(np.float32), "fcb")])
    g.nodes[-1].output[0] = "descriptors"
    return g.model(
        [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["N", CHIP_SIZE, CHIP_SIZE, 3])],
        [helper.make_tensor_value_info("descriptors", TensorProto.FLOAT, ["N", DIM])],
    )


def _session_options(threads: int | None) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads or (os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return so


@lru_cache(maxsize=1)
def descriptor_model_bytes() -> bytes:
    return build_descriptor_onnx(load_network(DESCRIPTOR)).SerializeToString()


class DescriptorRuntime:
    """Face chips to 128-D descriptors; subclasses implement ``_run`` on one runtime.

    ``compute(chips)`` takes (N, 150, 150, 3) RGB uint8 chips and returns (N, 128) float32.
    ``flip=True`` averages each chip with its mirror image; ``jitter=K`` averages K dlib-style
    jittered copies (random, seeded) instead of the plain chip.
    """

    runtime = "abstract"
    precision = "fp32"
    batch_size = 32

    def _run_batch(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _run(self, chips: np.ndarray) -> np.ndarray:
        out = np.empty((len(chips), DIM), np.float32)
        for start in range(0, len(chips), self.batch_size):
            batch = np.ascontiguousarray(chips[start : start + self.batch_size])
            out[start : start + len(batch)] = self._run_batch(batch)
        return out

    def compute(self, chips: np.ndarray, flip: bool = False, jitter: int = 0, seed: int = 0) -> np.ndarray:
        chips = np.asarray(chips)
        if chips.ndim == 3:
            chips = chips[None]
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3) or chips.dtype != np.uint8:
            raise ValueError(f"chips must be uint8 (N, {CHIP_SIZE}, {CHIP_SIZE}, 3), got {chips.dtype} {chips.shape}")
        if len(chips) == 0:
            return np.zeros((0, DIM), np.float32)
        if jitter > 0:
            from .jitter import jitter_chips

            rng = np.random.default_rng(seed)
            views = np.stack([jitter_chips(chips, rng) for _ in range(jitter)], axis=1)  # N, K, ...
            d = self._run(views.reshape(-1, CHIP_SIZE, CHIP_SIZE, 3)).reshape(len(chips), jitter, DIM)
            return d.mean(axis=1)
        if flip:
            both = np.concatenate([chips, chips[:, :, ::-1]], axis=0)
            d = self._run(both)
            return (d[: len(chips)] + d[len(chips) :]) / 2
        return self._run(chips)


class DescriptorModel(DescriptorRuntime):
    """The default runtime: onnxruntime on the CPU, fp32 (about 1e-6 from dlib)."""

    runtime = "onnxruntime-cpu"

    def __init__(self, threads: int | None = None, batch_size: int = 32, providers: list[str] | None = None):
        self.batch_size = batch_size
        self.session = ort.InferenceSession(
            descriptor_model_bytes(), _session_options(threads), providers=providers or ["CPUExecutionProvider"]
        )

    def _run_batch(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"chips": batch})[0]


def make_descriptor(runtime: str = "auto", precision: str = "fp32", threads: int | None = None) -> DescriptorRuntime:
    """Choose a descriptor runtime: ``onnx`` (default CPU), ``torch`` (extra; CPU bf16 on AMX, or
    CUDA when present), or ``auto`` (torch on a CUDA GPU when installed, else onnx;
    ``$OPENLFR_RUNTIME`` overrides ``auto``)."""
    try:
        runtime = choose_runtime(runtime, precision)
    except ValueError:
        raise ValueError(f"unknown descriptor runtime {runtime!r} (onnx, torch, auto)") from None
    if runtime == "onnx":
        if precision != "fp32":
            raise ValueError("the onnxruntime CPU runtime is fp32 only; use --runtime torch for bf16/fp16")
        return DescriptorModel(threads=threads)
    if runtime == "torch":
        from .torch_runtime import TorchDescriptorModel

        return TorchDescriptorModel(precision=precision, threads=threads)
