"""Read dlib DNN files (face descriptor ResNet, MMOD detector) into plain layer records.

A dlib network file holds: the loss layer (name and fields); one version int per layer wrapper,
output to input (tag and skip layers write only that); then, input to output, each computational
layer's fields followed by three bools and empty gradient/cache tensors. Tag/skip layers are not
in the file, so the topology comes from the network's C++ type (see ``descriptor_graph`` and
``mmod``); this module only returns the computational layers in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .dlib_serial import DlibFormatError, Reader


@dataclass
class Layer:
    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, fc, input
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Network:
    loss: dict[str, Any]
    input: dict[str, Any]
    layers: list[Layer]  # computational layers, input to output (input layer excluded)


def _read_loss(r: Reader) -> dict[str, Any]:
    name = r.string()
    if name == "loss_metric_2":
        return {"kind": "loss_metric", "margin": r.float(), "dist_thresh": r.float()}
    if name == "loss_metric_":
        return {"kind": "loss_metric"}
    if name == "loss_mmod_":
        # The file's mmod_options (old format, as in face_recognition_models): detector windows
        # (width, height) then seven doubles.
        windows = [{"width": r.int(), "height": r.int()} for _ in range(r.int())]
        return {
            "kind": "loss_mmod",
            "detector_windows": windows,
            "loss_per_false_alarm": r.float(),
            "loss_per_missed_target": r.float(),
            "truth_match_iou_threshold": r.float(),
            "nms_iou": r.float(),
            "nms_percent_covered": r.float(),
            "ignore_iou": r.float(),
            "ignore_percent_covered": r.float(),
        }
    raise DlibFormatError(f"unsupported loss layer {name!r}")


def _read_input(r: Reader) -> dict[str, Any]:
    name = r.string()
    if name == "input_rgb_image_sized":
        mean = (r.float(), r.float(), r.float())
        nr, nc = r.int(), r.int()
        return {"kind": "rgb_sized", "mean": mean, "nr": nr, "nc": nc}
    if name == "input_rgb_image_pyramid":
        mean = (r.float(), r.float(), r.float())
        return {"kind": "rgb_pyramid", "mean": mean, "padding": 10, "outer_padding": 11}
    if name == "input_rgb_image_pyramid2":
        mean = (r.float(), r.float(), r.float())
        return {"kind": "rgb_pyramid", "mean": mean, "padding": r.int(), "outer_padding": r.int()}
    raise DlibFormatError(f"unsupported input layer {name!r}")


def _slice(params: np.ndarray, alias: tuple[int, int, int, int], offset: int) -> tuple[np.ndarray, int]:
    n = int(np.prod(alias))
    return params[offset : offset + n], offset + n


def _read_layer(r: Reader) -> Layer:
    name = r.string()
    if name.startswith("con_"):
        version = int(name[4:])
        params = r.tensor().ravel()
        nf, nr, nc = r.int(), r.int(), r.int()
        sy, sx, py, px = r.int(), r.int(), r.int(), r.int()
        filt, bias = r.alias_tensor(), r.alias_tensor()
        for _ in range(4):
            r.float()
        use_bias = True
        if version >= 5:
            use_bias = r.bool()
        if version >= 6:
            r.bool()  # use_relu (fused), not used by these models
        w, off = _slice(params, filt, 0)
        b = params[off : off + nf] if use_bias else np.zeros(nf, np.float32)
        return Layer(
            "con",
            {
                "weight": w.reshape(filt).astype(np.float32),
                "bias": np.asarray(b, np.float32),
                "stride": (sy, sx),
                "pad": (py, px),
            },
        )
    if name == "affine_":
        params = r.tensor().ravel()
        g, b = r.alias_tensor(), r.alias_tensor()
        mode = r.int()
        if mode != 0:
            raise DlibFormatError("only per-channel affine layers are supported")
        c = int(np.prod(g))
        return Layer("affine", {"gamma": params[:c].copy(), "beta": params[c : 2 * c].copy()})
    if name.startswith("bn_con"):
        params = r.tensor().ravel()
        g, b = r.alias_tensor(), r.alias_tensor()
        means, invstds = r.tensor().ravel(), r.tensor().ravel()
        running_means, running_vars = r.tensor().ravel(), r.tensor().ravel()
        r.int()  # running_stats_window_size / counter
        if name == "bn_con2":
            r.int()
        for _ in range(4):
            r.float()
        eps = r.float()
        c = int(np.prod(g))
        gamma, beta = params[:c], params[c : 2 * c]
        scale = gamma / np.sqrt(running_vars + eps)
        return Layer(
            "affine",
            {"gamma": scale.astype(np.float32), "beta": (beta - scale * running_means).astype(np.float32)},
        )
    if name.startswith("relu_"):
        return Layer("relu")
    if name.startswith("max_pool_") or name.startswith("avg_pool_"):
        nr, nc, sy, sx = r.int(), r.int(), r.int(), r.int()
        py, px = r.int(), r.int()
        kind = "max_pool" if name.startswith("max") else "avg_pool"
        return Layer(kind, {"window": (nr, nc), "stride": (sy, sx), "pad": (py, px)})
    if name.startswith("add_prev_"):
        return Layer("add_prev")
    if name.startswith("fc_"):
        num_outputs, num_inputs = r.int(), r.int()
        params = r.tensor().ravel()
        w_alias, b_alias = r.alias_tensor(), r.alias_tensor()
        bias_mode = r.int()
        for _ in range(4):
            r.float()
        w = params[: num_inputs * num_outputs].reshape(num_inputs, num_outputs)
        b = params[num_inputs * num_outputs :][:num_outputs] if bias_mode == 0 else None
        return Layer("fc", {"weight": w.copy(), "bias": None if b is None else b.copy()})
    raise DlibFormatError(f"unsupported layer {name!r} at byte {r.pos}")


def _skip_tail(r: Reader, bottom: bool, version: int) -> None:
    for _ in range(3):
        r.bool()
    r.tensor()
    r.tensor()
    r.tensor()  # params_grad, or grad_final for the bottom layer
    if bottom and version >= 3:
        r.int()


def read_network(path: str | Path) -> Network:
    """Parse a dlib network file into its loss, input and computational layers."""
    path = Path(path)
    r = Reader(path.read_bytes(), path.name)
    loss_version = r.int()
    if loss_version != 1:
        raise DlibFormatError(f"{path.name}: unexpected loss-layer version {loss_version}")
    loss = _read_loss(r)
    # One version int per wrapper down to the bottom layer (version 3, or 2 in old files), which
    # is followed by the input layer's name string.
    versions = []
    while True:
        versions.append(r.int())
        ctrl = r.data[r.pos]
        if ctrl == 0x01 and r.pos + 2 < len(r.data) and bytes(r.data[r.pos + 2 : r.pos + 8]) == b"input_":
            break
        if len(versions) > 10000:
            raise DlibFormatError(f"{path.name}: no input layer found")
    bottom_version = versions[-1]
    inp = _read_input(r)
    layers = [_read_layer(r)]
    _skip_tail(r, bottom=True, version=bottom_version)
    while not r.at_end():
        layers.append(_read_layer(r))
        _skip_tail(r, bottom=False, version=2)
    return Network(loss=loss, input=inp, layers=layers)


def load_network(model_name: str) -> Network:
    """Parse one of the packaged network files (verified), through the on-disk cache."""
    from .cache import cached
    from .models import MODELS, model_path

    path = model_path(model_name)

    def build() -> dict[str, Any]:
        net = read_network(path)
        return {
            "loss": net.loss,
            "input": net.input,
            "layers": [{"kind": l.kind, "params": l.params} for l in net.layers],
        }

    d = cached("dnn", MODELS[model_name].sha256, build)

    def tup(p: dict[str, Any]) -> dict[str, Any]:
        return {k: tuple(v) if isinstance(v, list) else v for k, v in p.items()}

    return Network(
        loss=d["loss"],
        input=tup(d["input"]),
        layers=[Layer(l["kind"], tup(l["params"])) for l in d["layers"]],
    )
