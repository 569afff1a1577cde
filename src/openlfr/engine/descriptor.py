"""dlib's face descriptor ResNet (128-D) on onnxruntime, built from dlib's own weights.

The ONNX graph is made from the parsed ``dlib_face_recognition_resnet_model_v1.dat``: it takes
150x150 RGB uint8 chips (N, 150, 150, 3) and returns the raw 128-D fc output (not normalised),
as dlib's ``compute_face_descriptor`` does. Options: flip averaging (the chip and its mirror)
and dlib-style jitter averaging.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import onnx
import onnxruntime as ort

from .dnn_reader import Layer, Network, load_network
from .models import DESCRIPTOR
from .onnx_graph import GraphBuilder, TensorProto, conv_out, fold_affine, helper

CHIP_SIZE = 150
DIM = 128


def build_descriptor_onnx(net: Network) -> onnx.ModelProto:
    """Translate the parsed ResNet into an ONNX graph (uint8 NHWC chips in, (N, 128) out)."""
    if net.input.get("kind") != "rgb_sized":
        raise ValueError("not a descriptor network (input is not input_rgb_image_sized)")
    g = GraphBuilder("dlib_face_recognition_resnet_model_v1")
    mean = np.array(net.input["mean"], np.float32).reshape(1, 3, 1, 1)
    x = g.node("Cast", ["chips"], to=TensorProto.FLOAT)
    x = g.node("Transpose", [x], perm=[0, 3, 1, 2])
    x = g.node("Sub", [x, g.const(mean, "mean")])
    x = g.node("Mul", [x, g.const(np.array(1 / 256, np.float32), "scale")])
    layers: list[Layer] = list(net.layers)
    shape = (3, CHIP_SIZE, CHIP_SIZE)
    i = 0

    def conv_affine(x: str, shape, relu: bool):
        nonlocal i
        con, aff = layers[i], layers[i + 1]
        assert con.kind == "con" and aff.kind == "affine", (i, con.kind, aff.kind)
        w, b = fold_affine(con.params["weight"], con.params["bias"], aff.params["gamma"], aff.params["beta"])
        s, p = con.params["stride"], con.params["pad"]
        y = g.conv(x, w, b, s, p)
        i += 2
        if relu:
            assert layers[i].kind == "relu"
            y = g.relu(y)
            i += 1
        k = w.shape[2]
        return y, (w.shape[0], conv_out(shape[1], k, s[0], p[0]), conv_out(shape[2], k, s[1], p[1]))

    # Stem: conv 7x7/2 -> affine -> relu -> max_pool 3x3/2.
    x, shape = conv_affine(x, shape, relu=True)
    mp = layers[i]
    assert mp.kind == "max_pool"
    x = g.node("MaxPool", [x], kernel_shape=list(mp.params["window"]), strides=list(mp.params["stride"]))
    shape = (shape[0], conv_out(shape[1], 3, 2, 0), conv_out(shape[2], 3, 2, 0))
    i += 1
    # Residual blocks: con affine relu con affine [avg_pool] add_prev relu.
    while layers[i].kind == "con":
        block_in, in_shape = x, shape
        y, yshape = conv_affine(x, shape, relu=True)
        y, yshape = conv_affine(y, yshape, relu=False)
        shortcut, sshape = block_in, in_shape
        if layers[i].kind == "avg_pool":
            p = layers[i].params
            shortcut = g.node("AveragePool", [block_in], kernel_shape=list(p["window"]), strides=list(p["stride"]))
            sshape = (in_shape[0], conv_out(in_shape[1], 2, 2, 0), conv_out(in_shape[2], 2, 2, 0))
            i += 1
        assert layers[i].kind == "add_prev" and layers[i + 1].kind == "relu"
        target = tuple(max(a, b) for a, b in zip(yshape, sshape))
        x = g.node("Add", [g.pad_to(y, yshape, target), g.pad_to(shortcut, sshape, target)])
        x = g.relu(x)
        shape = target
        i += 2
    # Global average pool, then fc without bias.
    assert layers[i].kind == "avg_pool" and layers[i].params["window"] == (0, 0)
    x = g.node("GlobalAveragePool", [x])
    x = g.node("Flatten", [x], axis=1)
    fc = layers[i + 1]
    assert fc.kind == "fc" and i + 2 == len(layers)
    out = g.node("MatMul", [x, g.const(fc.params["weight"].astype(np.float32), "fc")])
    if fc.params.get("bias") is not None:
        out = g.node("Add", [out, g.const(fc.params["bias"].astype(np.float32), "fcb")])
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


class DescriptorModel:
    """Face chips to dlib's 128-D descriptors on onnxruntime (CPU by default).

    ``compute(chips)`` takes (N, 150, 150, 3) RGB uint8 chips and returns (N, 128) float32.
    ``flip=True`` averages each chip with its mirror image; ``jitter=K`` averages K dlib-style
    jittered copies (random, seeded) instead of the plain chip.
    """

    runtime = "onnxruntime-cpu"

    def __init__(self, threads: int | None = None, batch_size: int = 32, providers: list[str] | None = None):
        self.batch_size = batch_size
        self.session = ort.InferenceSession(
            descriptor_model_bytes(), _session_options(threads), providers=providers or ["CPUExecutionProvider"]
        )

    def _run(self, chips: np.ndarray) -> np.ndarray:
        out = np.empty((len(chips), DIM), np.float32)
        for start in range(0, len(chips), self.batch_size):
            batch = np.ascontiguousarray(chips[start : start + self.batch_size])
            out[start : start + len(batch)] = self.session.run(None, {"chips": batch})[0]
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
