"""Large galleries (10^5 to 10^7 templates): blocked exact search, exact search on a GPU, FAISS.

Three ``SearchIndex`` kinds for ``make_index`` (``watchlist/index.py``), beside ``exact``:

``exact-blocked`` (:class:`BlockedExactIndex`, numpy only)
    Brute force over blocks of templates, built for batches of probes: one matrix product per
    block gives every probe's score ``q.t - |t|^2/2`` (templates stored with that last column,
    516 bytes each), the best candidates of each block are kept, and the winners are re-ranked
    with distances computed directly in float64. Exact: the same neighbours as ``exact``
    (templates whose squared distances agree to float32 rounding, ~1e-6, are ties).
    Probes in batches amortise reading the templates (memory-bound for one probe).

``torch-exact`` (:class:`TorchExactIndex`, the ``torch``/``gpu`` extra)
    The same on PyTorch, for a GPU (``device='cuda'``, TF32 off so scores stay fp32); runs on
    the CPU too (tests). ``precision='fp16'``/``'bf16'`` halves template memory and reads; the
    candidates are then re-ranked in fp32 from ``rerank`` per block (recall to be measured,
    see bench/bench_gallery.py).

``faiss`` (:class:`FaissIndex`, the ``scale`` extra: ``pip install 'openlfr[scale]'``)
    Approximate search with FAISS: an HNSW graph by default (``HNSW32,Flat``: templates kept
    in full, ``ef_search`` candidates explored per probe; no training, templates can be added
    at any time), or any FAISS factory string (``"IVF4096,Flat"``: ``nlist`` clusters trained
    by k-means on a sample, ``nprobe`` of them scanned per probe). Small galleries (under
    ``flat_below`` templates) use an exact flat index until they grow past it. On a machine
    with FAISS's GPU build (``faiss-gpu``) ``device='auto'`` moves the index to the GPU
    (IVF and flat indexes; FAISS has no GPU HNSW). Recall@1 against exact search is measured
    by bench/bench_gallery.py (docs/scale.md).

All return Euclidean distances (not squared) and the labels given to ``add``; missing
neighbours are (inf, -1), as ``ExactIndex``.
"""

from __future__ import annotations

import math

import numpy as np

from .index import _as_queries, register_index
from .model import DIM


def _check_add(templates: np.ndarray, labels: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    t = _as_queries(templates, dim)
    lab = np.asarray(labels, np.int64).reshape(-1)
    if len(lab) != len(t):
        raise ValueError(f"{len(t)} templates but {len(lab)} labels")
    if not np.isfinite(t).all():
        raise ValueError("templates contain NaN or inf")
    return t, lab


def _rerank(q: np.ndarray, t: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest of the candidate rows ``cand`` (Q, C) of ``t``, distances in float64,
    ties broken by lower row. Returns (distances (Q, k) float32, rows (Q, k)); rows of -1 are
    missing candidates (inf)."""
    if cand.shape[1] < k:  # fewer templates than k: pad with missing ones
        cand = np.concatenate([cand, np.full((len(cand), k - cand.shape[1]), -1, cand.dtype)], 1)
    valid = cand >= 0
    rows = np.where(valid, cand, 0)
    d = np.sqrt(((t[rows].astype(np.float64) - q[:, None, :].astype(np.float64)) ** 2).sum(-1))
    d[~valid] = np.inf
    order = np.lexsort((rows, d), axis=-1)[:, :k]  # by distance, then row
    dist = np.take_along_axis(d, order, 1)
    out = np.take_along_axis(np.where(valid, cand, -1), order, 1)
    out[~np.isfinite(dist)] = -1
    return dist.astype(np.float32), out


class BlockedExactIndex:
    """Exact brute force, blocked for batches of probes (see the module docstring)."""

    kind = "exact-blocked"

    def __init__(self, dim: int = DIM, block: int = 32768, probe_batch: int = 512):
        self.dim = dim
        self.block = int(block)  # templates per matrix product
        self.probe_batch = int(probe_batch)  # probes per pass over the templates
        self._ta = np.empty((0, dim + 1), np.float32)  # [t, -|t|^2/2]
        self._labels = np.empty(0, np.int64)

    def __len__(self) -> int:
        return len(self._ta)

    @property
    def templates(self) -> np.ndarray:
        return self._ta[:, : self.dim]

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def memory_bytes(self) -> int:
        return int(self._ta.nbytes + self._labels.nbytes)

    def add(self, templates: np.ndarray, labels: np.ndarray) -> None:
        t, lab = _check_add(templates, labels, self.dim)
        ta = np.empty((len(t), self.dim + 1), np.float32)
        ta[:, : self.dim] = t
        ta[:, self.dim] = -0.5 * np.einsum("ij,ij->i", t.astype(np.float64), t.astype(np.float64))
        self._ta = ta if not len(self._ta) else np.concatenate([self._ta, ta])
        self._labels = np.concatenate([self._labels, lab])

    def search_rows(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(distances (Q, k), template rows (Q, k)); missing: (inf, -1)."""
        q = _as_queries(queries, self.dim)
        if k < 1:
            raise ValueError("k must be at least 1")
        n = len(self._ta)
        dist = np.full((len(q), k), np.inf, np.float32)
        rows = np.full((len(q), k), -1, np.int64)
        if n == 0 or len(q) == 0:
            return dist, rows
        kc = min(n, k)  # candidates per block (the block's best k by score), re-ranked exactly
        for s in range(0, len(q), self.probe_batch):
            qb = q[s : s + self.probe_batch]
            qa = np.ones((len(qb), self.dim + 1), np.float32)
            qa[:, : self.dim] = qb
            cands = []
            for b in range(0, n, self.block):
                scores = qa @ self._ta[b : b + self.block].T  # (Q, B): q.t - |t|^2/2, larger is nearer
                if kc == 1 or scores.shape[1] <= kc:
                    c = scores.argmax(1)[:, None] if kc == 1 else np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
                else:
                    c = np.argpartition(-scores, kc - 1, axis=1)[:, :kc]
                cands.append(c + b)
            d, r = _rerank(qb, self.templates, np.concatenate(cands, 1), k)
            dist[s : s + len(qb)], rows[s : s + len(qb)] = d, r
        return dist, rows

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        dist, rows = self.search_rows(queries, k)
        return dist, np.where(rows >= 0, self._labels[np.maximum(rows, 0)] if len(self._labels) else -1, -1)


class TorchExactIndex:
    """Brute force on PyTorch (a CUDA GPU when present): see the module docstring."""

    kind = "torch-exact"

    def __init__(self, dim: int = DIM, device: str | None = None, precision: str = "fp32", block: int = 1 << 18,
                 probe_batch: int = 1024, rerank: int = 8):
        import torch

        from ..engine.runtime import torch_device

        self.torch = torch
        self.dim = dim
        self.device = torch_device(device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False  # scores in true fp32
        dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        if precision not in dtypes:
            raise ValueError(f"precision must be one of {', '.join(dtypes)}")
        self.precision, self.dtype = precision, dtypes[precision]
        self.block, self.probe_batch = int(block), int(probe_batch)  # scores: probe_batch x block (1 GB fp32)
        self.rerank = int(rerank)  # candidates per block kept for the exact re-ranking (fp16/bf16)
        # fp32 on a GPU: re-rank there (distances computed directly); else on the host in float64
        self.rerank_on_device = precision == "fp32" and self.device.type == "cuda"
        self._ta = torch.empty((0, dim + 1), dtype=self.dtype, device=self.device)
        self._t32 = None if precision == "fp32" else torch.empty((0, dim), dtype=torch.float32, device="cpu")
        self._labels = np.empty(0, np.int64)

    def __len__(self) -> int:
        return int(self._ta.shape[0])

    def memory_bytes(self) -> int:
        """Device bytes (templates and scores column) plus host bytes (labels, fp32 copy)."""
        host = self._labels.nbytes + (0 if self._t32 is None else self._t32.numel() * 4)
        return int(self._ta.numel() * self._ta.element_size() + host)

    def add(self, templates: np.ndarray, labels: np.ndarray) -> None:
        torch = self.torch
        t, lab = _check_add(templates, labels, self.dim)
        tt = torch.from_numpy(t)
        ta = torch.empty((len(t), self.dim + 1), dtype=torch.float32)
        ta[:, : self.dim] = tt
        ta[:, self.dim] = torch.from_numpy(-0.5 * np.einsum("ij,ij->i", t.astype(np.float64), t.astype(np.float64)))
        if self._t32 is not None:  # fp16/bf16 scores: an fp32 copy on the host for the re-ranking
            self._t32 = torch.cat([self._t32, tt])
        self._ta = torch.cat([self._ta, ta.to(self.device, self.dtype)])
        self._labels = np.concatenate([self._labels, lab])

    def search_rows(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        q = _as_queries(queries, self.dim)
        if k < 1:
            raise ValueError("k must be at least 1")
        n = len(self)
        dist = np.full((len(q), k), np.inf, np.float32)
        rows = np.full((len(q), k), -1, np.int64)
        if n == 0 or len(q) == 0:
            return dist, rows
        kc = min(n, k + 3 if self.precision == "fp32" else max(k + 3, self.rerank))
        with torch.inference_mode():
            for s in range(0, len(q), self.probe_batch):
                qb = q[s : s + self.probe_batch]
                qa = torch.ones((len(qb), self.dim + 1), dtype=torch.float32)
                qa[:, : self.dim] = torch.from_numpy(qb)
                qa = qa.to(self.device, self.dtype)
                cands = []
                for b in range(0, n, self.block):
                    scores = qa @ self._ta[b : b + self.block].T
                    kb = min(kc, scores.shape[1])
                    cands.append(torch.topk(scores, kb, dim=1).indices + b)
                cand = torch.cat(cands, 1)
                if self.rerank_on_device:
                    # re-rank on the device, distances computed directly (no cancellation)
                    t = self._ta[:, : self.dim]
                    d = torch.linalg.vector_norm(t[cand] - torch.from_numpy(qb).to(self.device)[:, None, :], dim=-1)
                    d, order = torch.sort(d, dim=1, stable=True)
                    r = torch.gather(cand, 1, order)[:, :k]
                    kk = min(k, r.shape[1])
                    dist[s : s + len(qb), :kk] = d[:, :kk].cpu().numpy()
                    rows[s : s + len(qb), :kk] = r[:, :kk].cpu().numpy()
                    continue
                t = self._ta[:, : self.dim].numpy() if self._t32 is None else self._t32.numpy()
                d, r = _rerank(qb, t, cand.cpu().numpy(), k)
                dist[s : s + len(qb)], rows[s : s + len(qb)] = d, r
        return dist, rows

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        dist, rows = self.search_rows(queries, k)
        return dist, np.where(rows >= 0, self._labels[np.maximum(rows, 0)] if len(self._labels) else -1, -1)


def _faiss():
    try:
        import faiss
    except ImportError as e:
        raise ImportError("the faiss index needs FAISS: pip install 'openlfr[scale]' (faiss-cpu)") from e
    return faiss


def faiss_gpus() -> int:
    """GPUs FAISS can use (0 with the CPU build)."""
    try:
        faiss = _faiss()
    except ImportError:
        return 0
    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def default_nlist(n: int) -> int:
    """IVF clusters for ``n`` templates: ~4 sqrt(n), a power of two (1M -> 4096)."""
    return max(1, 2 ** round(math.log2(max(1.0, 4 * math.sqrt(n)))))


class FaissIndex:
    """Approximate (or exact, ``factory='Flat'``) search with FAISS: see the module docstring.

    ``factory``: ``"auto"`` (exact ``Flat`` under ``flat_below`` templates, else
    ``HNSW<hnsw_m>,Flat``), ``"ivf"`` (``IVF<nlist>,Flat``, nlist ~ 4 sqrt(N)), or a FAISS
    index factory string. ``ef_search`` (HNSW) and ``nprobe`` (IVF) trade speed for recall;
    the defaults were tuned on 1M synthetic templates for recall@1 >= 0.999 (docs/scale.md).
    An IVF index is trained on the first ``add`` (its clusters then stay: add a gallery in one
    go, or ``rebuild()`` after it has changed a lot).
    """

    kind = "faiss"

    def __init__(self, dim: int = DIM, factory: str = "auto", hnsw_m: int = 32, ef_construction: int = 128,
                 ef_search: int = 512, nlist: int | None = None, nprobe: int = 768, flat_below: int = 20000,
                 train_size: int = 262144, device: str = "auto", threads: int | None = None, seed: int = 1234):
        self.faiss = _faiss()
        self.dim = dim
        self.factory = factory
        self.hnsw_m, self.ef_construction = int(hnsw_m), int(ef_construction)
        self.nlist, self.nprobe, self.ef_search = nlist, int(nprobe), int(ef_search)
        self.flat_below, self.train_size, self.seed = int(flat_below), int(train_size), seed
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError("device is auto, cpu or cuda")
        if device == "cuda" and faiss_gpus() == 0:
            raise ValueError("FAISS sees no GPU (its GPU build, faiss-gpu, and a CUDA device are needed); use device='cpu'")
        self.use_gpu = device == "cuda" or (device == "auto" and faiss_gpus() > 0)
        if threads:
            self.faiss.omp_set_num_threads(int(threads))
        self._labels = np.empty(0, np.int64)
        self._index = None  # the CPU index (also the GPU index's source)
        self._search_index = None
        self.description = ""

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    # -- building ---------------------------------------------------------------------------

    def _spec(self, n: int) -> str:
        if self.factory == "ivf":
            return f"IVF{self.nlist or default_nlist(n)},Flat"
        if self.factory != "auto":
            return self.factory
        return "Flat" if n < self.flat_below else f"HNSW{self.hnsw_m},Flat"

    def _build(self, t: np.ndarray) -> None:
        faiss = self.faiss
        spec = self._spec(len(t))
        index = faiss.index_factory(self.dim, spec, faiss.METRIC_L2)
        if hasattr(index, "hnsw"):
            index.hnsw.efConstruction = self.ef_construction
        if not index.is_trained:
            rng = np.random.default_rng(self.seed)
            sample = t if len(t) <= self.train_size else t[np.sort(rng.choice(len(t), self.train_size, replace=False))]
            ivf = self._ivf(index)
            if ivf is not None:
                ivf.cp.seed = self.seed
                if len(sample) < 39 * ivf.nlist:
                    raise ValueError(f"{spec} needs at least {39 * ivf.nlist} templates to train; give nlist or add more")
            index.train(np.ascontiguousarray(sample))
        self._index = index
        self.description = spec

    def _ivf(self, index):
        try:
            return self.faiss.extract_index_ivf(index)
        except (RuntimeError, AttributeError):
            return None

    def _prepare_search(self) -> None:
        faiss, index = self.faiss, self._index
        ivf = self._ivf(index)
        if ivf is not None:
            ivf.nprobe = min(self.nprobe, ivf.nlist)
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = self.ef_search
        self._search_index = index
        if self.use_gpu and not hasattr(index, "hnsw"):
            res = getattr(self, "_gpu_res", None) or faiss.StandardGpuResources()
            self._gpu_res = res
            co = faiss.GpuClonerOptions()
            gi = faiss.index_cpu_to_gpu(res, 0, index, co)
            if ivf is not None:
                faiss.GpuParameterSpace().set_index_parameter(gi, "nprobe", min(self.nprobe, ivf.nlist))
            self._search_index = gi

    def add(self, templates: np.ndarray, labels: np.ndarray) -> None:
        t, lab = _check_add(templates, labels, self.dim)
        if len(t) == 0:
            return
        if self._index is None:
            self._build(t)
        elif self.factory == "auto" and self.description == "Flat" and len(self) + len(t) >= self.flat_below:
            old = self._index.reconstruct_n(0, len(self))  # outgrew the flat index: train the IVF one
            self._build(np.concatenate([old, t]))
            self._index.add(old)
        self._index.add(t)
        self._labels = np.concatenate([self._labels, lab])
        self._prepare_search()

    def rebuild(self) -> None:
        """Train again on everything held (after the gallery grew or changed a lot)."""
        if self._index is None or not len(self):
            return
        ivf = self._ivf(self._index)
        if ivf is not None:
            ivf.make_direct_map()
        t = self._index.reconstruct_n(0, len(self))
        self._build(t)
        self._index.add(t)
        self._prepare_search()

    def set_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        if nprobe is not None:
            self.nprobe = int(nprobe)
        if ef_search is not None:
            self.ef_search = int(ef_search)
        if self._index is not None:
            self._prepare_search()

    # -- searching --------------------------------------------------------------------------

    def search_rows(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        q = _as_queries(queries, self.dim)
        if k < 1:
            raise ValueError("k must be at least 1")
        dist = np.full((len(q), k), np.inf, np.float32)
        rows = np.full((len(q), k), -1, np.int64)
        if not len(self) or not len(q):
            return dist, rows
        d2, ids = self._search_index.search(q, k)
        ok = ids >= 0
        dist[ok] = np.sqrt(np.maximum(d2[ok], 0))
        rows[ok] = ids[ok]
        return dist, rows

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        dist, rows = self.search_rows(queries, k)
        return dist, np.where(rows >= 0, self._labels[np.maximum(rows, 0)] if len(self._labels) else -1, -1)

    # -- persistence ------------------------------------------------------------------------

    def save(self, path) -> None:
        """Write the index (FAISS's format) to ``path`` and its labels to ``path + '.labels.npy'``
        (a graph over a million templates takes minutes to build: build once, load after)."""
        if self._index is None:
            raise ValueError("nothing to save: the index is empty")
        self.faiss.write_index(self._index, str(path))
        np.save(f"{path}.labels.npy", self._labels)

    @classmethod
    def load(cls, path, **options) -> "FaissIndex":
        """An index written by :meth:`save`; ``options`` as the constructor's (search parameters, device)."""
        idx = cls(**options)
        idx._index = idx.faiss.read_index(str(path))
        idx._labels = np.load(f"{path}.labels.npy")
        if len(idx._labels) != idx._index.ntotal:
            raise ValueError(f"{path}: {idx._index.ntotal} templates but {len(idx._labels)} labels")
        idx.dim = idx._index.d
        idx.description = "HNSW,Flat" if hasattr(idx._index, "hnsw") else type(idx._index).__name__
        idx._prepare_search()
        return idx

    # -- figures ----------------------------------------------------------------------------

    def memory_bytes(self) -> int:
        """Bytes held: FAISS's index (as serialised: codes, ids, clusters, graph) plus the labels."""
        if self._index is None:
            return 0
        return int(self.faiss.serialize_index(self._index).nbytes + self._labels.nbytes)


register_index("exact-blocked", BlockedExactIndex)
register_index("torch-exact", TorchExactIndex)
register_index("faiss", FaissIndex)

__all__ = ["BlockedExactIndex", "TorchExactIndex", "FaissIndex", "default_nlist", "faiss_gpus"]
