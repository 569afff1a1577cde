"""dlib's 5-point shape predictor, read into numpy and evaluated without dlib.

The file (``shape_predictor_5_face_landmarks.dat``) holds an initial shape, 15 cascades of 500
depth-4 regression trees and, per cascade, 800 feature pixels given as (anchor landmark, delta)
in the normalised shape frame (docs/dlib-format.md, "5-point shape predictor"). Prediction
follows ``dlib::shape_predictor::operator()`` bit for bit: per cascade a similarity transform
(Umeyama in double, cast to float32) places the feature pixels, the box maps the unit square to
pixels, positions round with ``floor(x + 0.5)``, pixels outside the image read 0, grey is
``(r + g + b) // 3``, and leaf vectors are added in float32 one tree at a time. All 500 trees of a
cascade are walked together with numpy.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from . import dlib_geometry as geo
from .cache import cached
from .dlib_serial import DlibFormatError, Reader
from .models import MODELS, SHAPE5, model_path

CACHE_KIND = "shape_predictor"


def read_shape_predictor(path: str | Path) -> dict[str, Any]:
    """Parse a dlib ``shape_predictor`` file into arrays.

    Returns a dict with ``initial_shape`` (2P,) float32, ``split_idx1``/``split_idx2``
    (C, T, S) int32, ``split_thresh`` (C, T, S) float32, ``leaf_values`` (C, T, S+1, 2P)
    float32, ``anchor_idx`` (C, F) int32 and ``deltas`` (C, F, 2) float32, where C cascades
    of T trees have S splits each and F feature pixels.
    """
    path = Path(path)
    r = Reader(path.read_bytes(), path.name)
    version = r.int()
    if version != 1:
        raise DlibFormatError(f"{path.name}: unexpected shape_predictor version {version}")
    initial = r.matrix(np.float32).reshape(-1)
    n_params = initial.size
    if n_params == 0 or n_params % 2:
        raise DlibFormatError(f"{path.name}: bad initial shape of {n_params} values")

    idx1: list[list[list[int]]] = []
    idx2: list[list[list[int]]] = []
    thresh: list[list[list[float]]] = []
    leaves: list[np.ndarray] = []
    n_splits = None
    for _ in range(r.int()):
        c_i1, c_i2, c_th, c_leaves = [], [], [], []
        for _ in range(r.int()):
            ns = r.int()
            if n_splits is None:
                n_splits = ns
            if ns != n_splits:
                raise DlibFormatError(f"{path.name}: trees of different depths are not supported")
            t_i1, t_i2, t_th = [], [], []
            for _ in range(ns):
                t_i1.append(r.int())
                t_i2.append(r.int())
                t_th.append(r.float())
            nl = r.int()
            if nl != ns + 1:
                raise DlibFormatError(f"{path.name}: tree with {ns} splits has {nl} leaves")
            leaf = np.stack([r.matrix(np.float32).reshape(-1) for _ in range(nl)])
            if leaf.shape[1] != n_params:
                raise DlibFormatError(f"{path.name}: leaf of {leaf.shape[1]} values, expected {n_params}")
            c_i1.append(t_i1)
            c_i2.append(t_i2)
            c_th.append(t_th)
            c_leaves.append(leaf)
        idx1.append(c_i1)
        idx2.append(c_i2)
        thresh.append(c_th)
        leaves.append(np.stack(c_leaves))

    anchors = [[r.int() for _ in range(r.int())] for _ in range(r.int())]
    deltas = []
    for _ in range(r.int()):
        deltas.append([(r.float(), r.float()) for _ in range(r.int())])
    if not r.at_end():
        raise DlibFormatError(f"{path.name}: {len(r.data) - r.pos} unexpected trailing bytes")
    if not (len(anchors) == len(deltas) == len(idx1)):
        raise DlibFormatError(f"{path.name}: cascade counts disagree")
    model = {
        "initial_shape": initial.astype(np.float32),
        "split_idx1": np.asarray(idx1, dtype=np.int32),
        "split_idx2": np.asarray(idx2, dtype=np.int32),
        "split_thresh": np.asarray(thresh, dtype=np.float32),
        "leaf_values": np.stack(leaves).astype(np.float32),
        "anchor_idx": np.asarray(anchors, dtype=np.int32),
        "deltas": np.asarray(deltas, dtype=np.float32),
    }
    n_feat = model["anchor_idx"].shape[1]
    if model["split_idx1"].max() >= n_feat or model["split_idx2"].max() >= n_feat:
        raise DlibFormatError(f"{path.name}: split refers to a missing feature pixel")
    if model["anchor_idx"].max() >= n_params // 2:
        raise DlibFormatError(f"{path.name}: feature anchored to a missing landmark")
    return model


def load_shape_predictor_model() -> dict[str, Any]:
    """The 5-point model's arrays, parsed once and then read from the on-disk cache."""
    return cached(CACHE_KIND, MODELS[SHAPE5].sha256, lambda: read_shape_predictor(model_path(SHAPE5)))


def _unnormalizing_tform(box: tuple[int, int, int, int]) -> geo.Affine:
    """dlib's ``unnormalizing_tform``: (0,0)->(left,top), (1,0)->(right,top), (1,1)->(right,bottom)."""
    left, top, right, bottom = (float(np.float32(v)) for v in box)
    return geo.find_affine_transform(
        [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)], [(left, top), (right, top), (right, bottom)]
    )


def _leaf_table(depth: int) -> np.ndarray:
    """Leaf index reached for every pattern of split decisions of a complete tree."""
    n_splits = (1 << depth) - 1
    masks = np.arange(1 << n_splits, dtype=np.intp)
    node = np.zeros_like(masks)
    for _ in range(depth):
        go_left = (masks >> node) & 1
        node = 2 * node + 2 - go_left
    return (node - n_splits).astype(np.intp)


class ShapePredictor:
    """Numpy evaluation of a dlib shape predictor (defaults to the 5-point model)."""

    def __init__(self, model: dict[str, Any] | None = None):
        m = load_shape_predictor_model() if model is None else model
        self.initial_shape = np.ascontiguousarray(m["initial_shape"], dtype=np.float32)
        self._initial_pts = [
            (float(x), float(y)) for x, y in self.initial_shape.reshape(-1, 2)
        ]
        i1 = np.asarray(m["split_idx1"], dtype=np.intp)
        i2 = np.asarray(m["split_idx2"], dtype=np.intp)
        th = np.asarray(m["split_thresh"], dtype=np.float32)
        lv = np.asarray(m["leaf_values"], dtype=np.float32)
        self.num_cascades, self.num_trees, self.num_splits = i1.shape
        self.num_parts = self.initial_shape.size // 2
        self.depth = int(np.log2(self.num_splits + 1))
        if (1 << self.depth) != self.num_splits + 1:
            raise ValueError("trees must be complete binary trees")
        c, t, s = i1.shape
        self._node_base = np.arange(t, dtype=np.intp) * s
        self._leaf_base = np.arange(t, dtype=np.intp) * (s + 1) - s
        self._leaf_row = np.arange(t, dtype=np.intp) * (s + 1)
        self._leaves = lv.reshape(c, t * (s + 1), -1)
        # Decide every split of a cascade at once; with the splits of a tree padded to a whole
        # number of bytes (padding splits compare f[0] - f[0] > inf: never true), packbits gives
        # each tree's decision pattern, and a table maps the pattern to the leaf reached.
        self._bits = 8 if s <= 8 else 16 if s <= 16 else 0
        if self._bits:
            pad = ((0, 0), (0, 0), (0, self._bits - s))
            i1 = np.pad(i1, pad)
            i2 = np.pad(i2, pad)
            th = np.pad(th, pad, constant_values=np.inf)
            self._leaf_lut = _leaf_table(self.depth)
        self._idx1 = i1.reshape(c, -1)
        self._idx2 = i2.reshape(c, -1)
        self._thresh = th.reshape(c, -1)
        self._anchor_x = np.asarray(m["anchor_idx"], dtype=np.intp) * 2
        d = np.asarray(m["deltas"], dtype=np.float32)
        self._dx = np.ascontiguousarray(d[..., 0])
        self._dy = np.ascontiguousarray(d[..., 1])

    def _shape(self, image: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, geo.Affine]:
        img = np.asarray(image)
        if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
            raise ValueError("image must be (H, W) or (H, W, 3) uint8")
        box = tuple(int(v) for v in box)
        if len(box) != 4:
            raise ValueError("box must be (left, top, right, bottom)")
        h, w = img.shape[:2]
        flat = img.reshape(h * w, 3) if img.ndim == 3 else img.reshape(-1)
        (u00, u01), (u10, u11) = (ut := _unnormalizing_tform(box))[0]
        ub0, ub1 = ut[1]
        f32 = np.float32
        shape = self.initial_shape.copy()
        for c in range(self.num_cascades):
            # Similarity from the initial to the current shape, fitted in double, used in float32.
            cur_pts = [(float(x), float(y)) for x, y in shape.reshape(-1, 2)]
            (t00, t01), (t10, t11) = geo.find_similarity_transform(self._initial_pts, cur_pts)[0]
            dx, dy = self._dx[c], self._dy[c]
            ax = self._anchor_x[c]
            px = (f32(t00) * dx + f32(t01) * dy) + shape[ax]
            py = (f32(t10) * dx + f32(t11) * dy) + shape[ax + 1]
            px = px.astype(np.float64)
            py = py.astype(np.float64)
            # floor(x + 0.5), clipped only so that far-off points cast safely (they stay outside).
            ix = np.clip(np.floor((u00 * px + u01 * py) + ub0 + 0.5), -1, w).astype(np.int64)
            iy = np.clip(np.floor((u10 * px + u11 * py) + ub1 + 0.5), -1, h).astype(np.int64)
            inside = (ix.view(np.uint64) < w) & (iy.view(np.uint64) < h)
            lin = np.where(inside, iy * w + ix, 0)
            if flat.ndim == 2:
                rgb = np.take(flat, lin, axis=0).astype(np.int32)
                grey = (rgb[:, 0] + rgb[:, 1] + rgb[:, 2]) // 3
            else:
                grey = np.take(flat, lin)
            feats = np.where(inside, grey, 0).astype(np.float32)

            i1, i2, th = self._idx1[c], self._idx2[c], self._thresh[c]
            if self._bits:
                go_left = (feats[i1] - feats[i2]) > th
                mask = np.packbits(go_left, bitorder="little").view("<u1" if self._bits == 8 else "<u2")
                leaves = self._leaves[c][self._leaf_row + self._leaf_lut[mask]]
            else:
                node = np.zeros(self.num_trees, dtype=np.intp)
                for _ in range(self.depth):
                    k = self._node_base + node
                    go_left = (feats[i1[k]] - feats[i2[k]]) > th[k]
                    node = 2 * node + 2 - go_left
                leaves = self._leaves[c][self._leaf_base + node]
            # dlib adds the leaf vectors in float32, one tree after another.
            acc = np.concatenate([shape[None], leaves])
            shape = np.add.accumulate(acc, axis=0, dtype=np.float32)[-1]
        return shape, ut

    def predict_subpixel(self, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """Landmark positions (P, 2) float64 before dlib rounds them to integer pixels."""
        shape, ut = self._shape(image, box)
        pts = shape.reshape(-1, 2).astype(np.float64)
        (m00, m01), (m10, m11) = ut[0]
        x = (m00 * pts[:, 0] + m01 * pts[:, 1]) + ut[1][0]
        y = (m10 * pts[:, 0] + m11 * pts[:, 1]) + ut[1][1]
        return np.stack([x, y], axis=1)

    def predict(self, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """dlib's ``shape_predictor(image, rectangle(*box))`` parts as a (P, 2) float64 array.

        ``image`` is (H, W, 3) RGB or (H, W) grey uint8; ``box`` is (left, top, right, bottom)
        with inclusive integer corners. Like dlib's ``full_object_detection``, the points are
        whole pixels (``floor(x + 0.5)``).
        """
        return np.floor(self.predict_subpixel(image, box) + 0.5)

    __call__ = predict


@lru_cache(maxsize=1)
def load_shape_predictor() -> ShapePredictor:
    """The shared 5-point :class:`ShapePredictor` (parsed once, cached on disk)."""
    return ShapePredictor()
