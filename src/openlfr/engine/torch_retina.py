"""RetinaFace's network on PyTorch (the ``torch`` / ``gpu`` extras): CUDA when present.

The network is rebuilt from the same ONNX model that onnxruntime runs (``retina_weights``):
its initializers become the module's buffers and its nodes run in graph order on torch tensors.
The graph holds only convolutions (batch-norm already folded), LeakyReLU/ReLU, additions,
concatenations, nearest-neighbour resizes to a computed size, head transposes and reshapes,
a softmax, and the small integer shape arithmetic around them (Shape, Gather, Slice, Concat...
of sizes), which runs eagerly on Python integers. So no converter package is needed, and the
answers are the onnxruntime path's to float rounding (``tests/test_retina.py``). Pre- and
post-processing (priors, decoding, NMS) are ``retina.py``'s, shared by both runtimes.

Padding masked: an image padded beyond its own multiple of 32 (a shape bucket, so that a GPU sees
a few shapes) would change the network's answers near its right and bottom edges (the padding's
features are not zero after the first convolution). Given each image's own size (``valid``),
every convolution's output is zeroed outside it, which is exactly what the convolutions' zero
padding does at the edge of an input of that size: the answers on the image's own anchors are
those of the image alone (``masks_padding``; ``RetinaDetector`` then keeps those anchors).
"""

from __future__ import annotations

import threading

import numpy as np
import onnx
from onnx import numpy_helper

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("the torch RetinaFace runtime needs PyTorch: pip install 'openlfr[torch]'") from e

from .retina_weights import retina_onnx_bytes
from .runtime import torch_device

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_SUPPORTED = {"Conv", "LeakyRelu", "Relu", "Add", "Concat", "Resize", "Transpose", "Reshape", "Softmax", "Identity",
              "Shape", "Gather", "Unsqueeze", "Slice", "Cast", "Constant"}


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class TorchRetinaNetwork(torch.nn.Module):
    """(N, 3, H, W) float32 (numpy or tensor) -> loc, conf, landmarks as float32 numpy arrays."""

    def __init__(self, device: str | None = None, precision: str = "fp32"):
        super().__init__()
        model = onnx.load_from_string(retina_onnx_bytes())
        ops = {n.op_type for n in model.graph.node}
        if not ops <= _SUPPORTED:
            raise ValueError(f"RetinaFace graph holds unsupported operators: {sorted(ops - _SUPPORTED)}")
        if precision not in DTYPES:
            raise ValueError(f"precision must be one of {', '.join(DTYPES)}")
        self.device = torch_device(device)
        if self.device.type == "cuda":  # fp32 as onnxruntime's, as the descriptor and MMOD networks do
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.dtype = DTYPES[precision]
        self.runtime = f"torch-{self.device.type}-{precision}"
        self._names: dict[str, str] = {}
        for i, init in enumerate(model.graph.initializer):
            arr = numpy_helper.to_array(init)
            t = torch.from_numpy(arr.copy())
            if t.is_floating_point():
                t = t.to(self.dtype)
            self.register_buffer(f"w{i}", t)
            self._names[init.name] = f"w{i}"
        self.nodes = [(n.op_type, list(n.input), list(n.output), _attrs(n)) for n in model.graph.node]
        self.inputs = [i.name for i in model.graph.input]
        self.outputs = [o.name for o in model.graph.output]
        self.to(self.device)
        self.eval()
        self._lock = threading.Lock()  # cudnn autotune and buffers: one call at a time per module

    masks_padding = True  # ``__call__(tensor, valid)`` zeroes each convolution's output outside ``valid``

    def _value(self, env: dict, name: str):
        if name == "":
            return None
        if name in env:
            return env[name]
        return getattr(self, self._names[name])

    def _masks(self, x: torch.Tensor, valid):
        """A function (h, w) -> (N, 1, h, w) mask of each sample's own part at that resolution."""
        if valid is None:
            return None
        H, W = x.shape[-2:]
        vh = torch.tensor([v[0] for v in valid], device=x.device)
        vw = torch.tensor([v[1] for v in valid], device=x.device)
        cache: dict[tuple[int, int], torch.Tensor] = {}

        def mask(h: int, w: int) -> torch.Tensor:
            if (h, w) not in cache:  # (sizes are multiples of 32, strides at most 32: exact)
                rows = torch.arange(h, device=x.device)[None, :] < (vh * h // H)[:, None]
                cols = torch.arange(w, device=x.device)[None, :] < (vw * w // W)[:, None]
                cache[(h, w)] = (rows[:, None, :, None] & cols[:, None, None, :]).to(x.dtype)
            return cache[(h, w)]

        return mask

    def _run(self, x: torch.Tensor, valid=None) -> list[torch.Tensor]:
        env: dict[str, object] = {self.inputs[0]: x}
        mask = self._masks(x, valid)
        for op, ins, outs, a in self.nodes:
            v = [self._value(env, n) for n in ins]
            if op == "Conv":
                pads = a.get("pads", [0, 0, 0, 0])
                if pads[0] != pads[2] or pads[1] != pads[3]:
                    raise ValueError("asymmetric Conv padding")
                y = F.conv2d(v[0], v[1], v[2] if len(v) > 2 else None, a.get("strides", [1, 1]),
                             pads[:2], a.get("dilations", [1, 1]), a.get("group", 1))
                if mask is not None:  # the padding beyond each image's own size stays zero, as the
                    y = y * mask(*y.shape[-2:])  # zero padding of an input of that size is
            elif op == "LeakyRelu":
                y = F.leaky_relu(v[0], a.get("alpha", 0.01))
            elif op == "Relu":
                y = F.relu(v[0])
            elif op == "Add":
                y = v[0] + v[1]
            elif op == "Identity":
                y = v[0]
            elif op == "Constant":
                y = numpy_helper.to_array(a["value"])
            elif op == "Shape":
                y = np.array(v[0].shape, np.int64)
            elif op == "Gather":
                y = np.take(np.asarray(v[0]), np.asarray(v[1]), axis=a.get("axis", 0))
            elif op == "Unsqueeze":
                y = np.expand_dims(np.asarray(v[0]), tuple(a["axes"]))
            elif op == "Slice":
                data, starts, ends = np.asarray(v[0]), np.asarray(v[1]), np.asarray(v[2])
                axes = np.asarray(v[3]) if len(v) > 3 and v[3] is not None else np.arange(len(starts))
                sl = [slice(None)] * data.ndim
                for s, e, ax in zip(starts, ends, axes):
                    sl[int(ax)] = slice(int(s), int(e))
                y = data[tuple(sl)]
            elif op == "Cast":
                y = np.asarray(v[0]).astype(onnx.helper.tensor_dtype_to_np_dtype(a["to"]))
            elif op == "Concat":
                if isinstance(v[0], torch.Tensor):
                    y = torch.cat(v, dim=a["axis"])
                else:
                    y = np.concatenate([np.asarray(t) for t in v], axis=a["axis"])
            elif op == "Resize":
                mode, ctm = a.get("mode", b"nearest"), a.get("coordinate_transformation_mode", b"half_pixel")
                if mode != b"nearest" or ctm != b"asymmetric" or a.get("nearest_mode", b"round_prefer_floor") != b"floor":
                    raise ValueError("only nearest/asymmetric/floor Resize is supported")
                sizes = [int(s) for s in np.asarray(v[3])][2:]
                y = F.interpolate(v[0], size=sizes, mode="nearest")
            elif op == "Transpose":
                y = v[0].permute(*a["perm"])
            elif op == "Reshape":
                y = v[0].reshape(*[int(s) for s in np.asarray(v[1])])
            elif op == "Softmax":
                y = torch.softmax(v[0].float(), dim=a.get("axis", -1))
            else:  # pragma: no cover - refused in __init__
                raise ValueError(op)
            env[outs[0]] = y
        return [env[o] for o in self.outputs]

    @torch.inference_mode()
    def __call__(self, tensor, valid: list[tuple[int, int]] | None = None) -> list[np.ndarray]:
        """``valid``: each image's own (height, width), multiples of 32, when the batch is padded
        beyond them (its outputs on its own anchors are then those of the image alone)."""
        x = tensor if isinstance(tensor, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(tensor))
        x = x.to(self.device, self.dtype, non_blocking=True)
        if valid is not None and all(tuple(v) == tuple(x.shape[-2:]) for v in valid):
            valid = None  # nothing padded
        with self._lock:
            outs = self._run(x, valid)
        return [o.float().cpu().numpy() for o in outs]
