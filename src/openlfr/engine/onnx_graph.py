"""A small builder for ONNX graphs made from dlib layer records (conv, affine, relu, pools, fc).

Affine layers that follow a convolution are folded into its weights and bias, as dlib's own
inference does with batch-norm. Shapes are tracked statically (C, H, W) so that dlib's
add_prev with mismatched sizes (zero-padded to the larger of each dimension) can be expressed.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class GraphBuilder:
    def __init__(self, name: str):
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def fresh(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, array: np.ndarray, prefix: str = "c") -> str:
        name = self.fresh(prefix)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], prefix: str | None = None, **attrs) -> str:
        out = self.fresh(prefix or op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(self, x: str, weight: np.ndarray, bias: np.ndarray, stride, pad) -> str:
        return self.node(
            "Conv",
            [x, self.const(weight.astype(np.float32), "w"), self.const(bias.astype(np.float32), "b")],
            strides=list(stride),
            pads=[pad[0], pad[1], pad[0], pad[1]],
            kernel_shape=list(weight.shape[2:]),
        )

    def relu(self, x: str) -> str:
        return self.node("Relu", [x])

    def pad_to(self, x: str, shape: tuple[int, int, int], target: tuple[int, int, int]) -> str:
        """Zero-pad (C, H, W) at the end up to ``target``."""
        if shape == target:
            return x
        extra = [t - s for s, t in zip(shape, target)]
        pads = np.array([0, 0, 0, 0, 0, *extra], dtype=np.int64)
        return self.node("Pad", [x, self.const(pads, "pads")], mode="constant")

    def model(self, inputs, outputs) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        return model


def fold_affine(weight: np.ndarray, bias: np.ndarray, gamma: np.ndarray, beta: np.ndarray):
    """conv then per-channel affine (y*g + b) as one conv: W' = W*g, b' = b*g + beta."""
    g = gamma.astype(np.float64)
    w = (weight.astype(np.float64) * g[:, None, None, None]).astype(np.float32)
    b = (bias.astype(np.float64) * g + beta.astype(np.float64)).astype(np.float32)
    return w, b


def conv_out(size: int, window: int, stride: int, pad: int) -> int:
    return 1 + (size + 2 * pad - window) // stride


__all__ = ["GraphBuilder", "fold_affine", "conv_out", "TensorProto", "helper"]
