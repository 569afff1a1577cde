"""1:N search over templates: a small protocol, an exact numpy index and a factory.

Distances are Euclidean (dlib's metric). Smaller is more similar; an alert is raised when the
distance is *below* the threshold (see ``threshold.py``).
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np

from .model import DIM


@runtime_checkable
class SearchIndex(Protocol):
    """Templates with integer labels (subject indices), searched by Euclidean distance."""

    def add(self, templates: np.ndarray, labels: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(distances (Q, k) ascending, labels (Q, k)); missing neighbours are (inf, -1)."""
        ...

    def __len__(self) -> int: ...


def _as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.asarray(queries, np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"queries must be (Q, {dim}), got {np.shape(queries)}")
    return np.ascontiguousarray(q)


class ExactIndex:
    """Brute-force index in numpy; exact top-k.

    Squared distances come from ||q||² + ||t||² - 2 q·t in float32 (one matrix product per
    batch of probes), clamped at 0. The k winners are picked with ``argpartition``; equal
    distances are broken by insertion order, so results are deterministic. The returned
    distances are recomputed directly as ||q - t|| for the winners (no cancellation error).
    """

    def __init__(self, dim: int = DIM, batch_elems: int = 1 << 24):
        self.dim = dim
        self.batch_elems = batch_elems  # Q x M elements per distance block (64 MiB in float32)
        self._t = np.empty((0, dim), np.float32)
        self._n = np.empty(0, np.float32)
        self._labels = np.empty(0, np.int64)

    def __len__(self) -> int:
        return len(self._t)

    @property
    def templates(self) -> np.ndarray:
        return self._t

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def add(self, templates: np.ndarray, labels: np.ndarray) -> None:
        t = _as_queries(templates, self.dim)
        lab = np.asarray(labels, np.int64).reshape(-1)
        if len(lab) != len(t):
            raise ValueError(f"{len(t)} templates but {len(lab)} labels")
        if not np.isfinite(t).all():
            raise ValueError("templates contain NaN or inf")
        self._t = np.ascontiguousarray(np.concatenate([self._t, t]))
        self._n = np.einsum("ij,ij->i", self._t, self._t)
        self._labels = np.concatenate([self._labels, lab])

    def _batches(self, q: np.ndarray):
        step = max(1, self.batch_elems // max(1, len(self._t)))
        for s in range(0, len(q), step):
            yield s, q[s : s + step]

    def squared_distances(self, queries: np.ndarray) -> np.ndarray:
        """(Q, M) squared distances by the dot-product trick (float32, clamped at 0)."""
        q = _as_queries(queries, self.dim)
        d2 = np.einsum("ij,ij->i", q, q)[:, None] + self._n[None, :] - 2.0 * (q @ self._t.T)
        return np.maximum(d2, 0.0, out=d2)

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        q = _as_queries(queries, self.dim)
        if k < 1:
            raise ValueError("k must be at least 1")
        nq, m = len(q), len(self._t)
        dist = np.full((nq, k), np.inf, np.float32)
        labels = np.full((nq, k), -1, np.int64)
        kk = min(k, m)
        if kk == 0 or nq == 0:
            return dist, labels
        for s, qb in self._batches(q):
            idx = _topk(self.squared_distances(qb), kk)
            d = np.linalg.norm(qb[:, None, :] - self._t[idx], axis=-1)
            order = np.argsort(d, axis=1, kind="stable")  # idx is in insertion order within ties
            idx = np.take_along_axis(idx, order, axis=1)
            dist[s : s + len(qb), :kk] = np.take_along_axis(d, order, axis=1)
            labels[s : s + len(qb), :kk] = self._labels[idx]
        return dist, labels

    def min_per_label(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distances (Q, L), label values (L,)): each label's nearest template, for every query."""
        q = _as_queries(queries, self.dim)
        uniq, inv = np.unique(self._labels, return_inverse=True)
        order = np.argsort(inv, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(inv[order]) != 0]) if len(order) else np.empty(0, int)
        out = np.empty((len(q), len(uniq)), np.float32)
        for s, qb in self._batches(q):
            d2 = self.squared_distances(qb)[:, order]
            out[s : s + len(qb)] = np.sqrt(np.minimum.reduceat(d2, starts, axis=1)) if len(uniq) else out[:0]
        return out, uniq


def _topk(d2: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k smallest entries per row, ties broken by lower index."""
    m = d2.shape[1]
    if k >= m:
        return np.broadcast_to(np.arange(m), d2.shape).copy()
    part = np.argpartition(d2, k - 1, axis=1)[:, k - 1]
    kth = d2[np.arange(len(d2)), part][:, None]
    less = d2 < kth
    eq = d2 == kth
    need = k - less.sum(axis=1, keepdims=True)
    take = less | (eq & (np.cumsum(eq, axis=1) <= need))
    return np.nonzero(take)[1].reshape(len(d2), k)


def best_per_subject(index: SearchIndex, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest subject per query: (distances (Q,), subject labels (Q,)).

    A subject's distance is the minimum over its templates, so this is the label and distance
    of the nearest template. An empty index gives (inf, -1).
    """
    d, lab = index.search(queries, 1)
    return d[:, 0], lab[:, 0]


def top_subjects(index: SearchIndex, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest distinct subjects per query: (distances (Q, k), labels (Q, k)), ascending.

    Each subject appears at most once per row with its minimum distance over its templates;
    missing ones (fewer than k subjects) are (inf, -1).
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    if isinstance(index, ExactIndex):
        q = _as_queries(queries, index.dim)
        dist = np.full((len(q), k), np.inf, np.float32)
        labels = np.full((len(q), k), -1, np.int64)
        per, uniq = index.min_per_label(q)
        kk = min(k, len(uniq))
        if kk and len(q):
            idx = _topk(per, kk)
            d = np.take_along_axis(per, idx, axis=1)
            order = np.argsort(d, axis=1, kind="stable")
            dist[:, :kk] = np.take_along_axis(d, order, axis=1)
            labels[:, :kk] = uniq[np.take_along_axis(idx, order, axis=1)]
        return dist, labels
    # Any other index: widen the template search until k distinct subjects are found.
    n = len(index)
    kt = min(n, max(4 * k, 8))
    while True:
        d, lab = index.search(queries, max(kt, 1))
        dist = np.full((len(d), k), np.inf, np.float32)
        labels = np.full((len(d), k), -1, np.int64)
        complete = True
        for r in range(len(d)):
            seen: list[int] = []
            for dd, ll in zip(d[r], lab[r]):
                if ll >= 0 and ll not in seen:
                    dist[r, len(seen)], labels[r, len(seen)] = dd, ll
                    seen.append(int(ll))
                    if len(seen) == k:
                        break
            complete &= len(seen) == k or kt >= n
        if complete:
            return dist, labels
        kt = min(n, kt * 4)


_FACTORIES: dict[str, Callable[..., SearchIndex]] = {"exact": ExactIndex}
_LAZY = {k: "openlfr.watchlist.faiss_index" for k in ("exact-blocked", "torch-exact", "faiss")}


def register_index(kind: str, factory: Callable[..., SearchIndex]) -> None:
    """Make another index kind (e.g. FAISS) available to ``make_index``."""
    _FACTORIES[kind] = factory


def make_index(kind: str = "exact", dim: int = DIM, **options) -> SearchIndex:
    """An empty index of the given kind ("exact"; others once registered)."""
    if kind not in _FACTORIES and kind in _LAZY:  # large-gallery kinds: registered on import
        import importlib

        importlib.import_module(_LAZY[kind])
    try:
        factory = _FACTORIES[kind]
    except KeyError:
        raise ValueError(f"unknown index kind {kind!r}; available: {', '.join(sorted(_FACTORIES))}") from None
    return factory(dim=dim, **options)
