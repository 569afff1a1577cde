"""Synthetic galleries with the statistics of real face descriptors, and search-quality figures.

A million enrolled people cannot be downloaded, so large-gallery measurements draw templates
from a model fitted to real descriptors (by default the LFW descriptors cached at
``bench/out/lfw_dev_descriptors.npz``, 2,815 people, 6,127 faces):

- **identities**: ``mu + sqrt(a) (m_r - mu) + N(0, (1 - a) Sb)``, where ``m_r`` is the mean
  descriptor of a randomly chosen real person, ``mu`` the mean of those, ``Sb`` their
  covariance (between-person scatter) and ``a`` = 0.5: the mean and covariance are the real
  ones, and half the variance keeps the real people's non-Gaussian layout;
- **faces** of an identity: its centre plus ``N(0, Sw)``, the real within-person covariance
  (same-person distances then follow LFW's, median ~0.43; different people ~0.82).

A gallery template is one face of an identity; a *member* probe is another face of a gallery
identity (a new draw of the within-person noise), a *non-member* probe a face of a new identity.
Without the cache (a fresh checkout), :func:`fallback_model` gives an isotropic model with the
same mean distances.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DIM = 128
REPO = Path(__file__).resolve().parents[3]
LFW_CACHE = REPO / "bench" / "out" / "lfw_dev_descriptors.npz"


@dataclass(frozen=True)
class DescriptorModel:
    """A Gaussian model of identities and faces fitted to real descriptors (see the module doc)."""

    mu: np.ndarray  # (128,)
    centres: np.ndarray  # (P, 128): real people's mean descriptors
    between: np.ndarray  # (128, 128) Cholesky factor of the between-person covariance
    within: np.ndarray  # (128, 128) Cholesky factor of the within-person covariance
    source: str
    mix: float = 0.5

    def identities(self, n: int, rng: np.random.Generator, out: np.ndarray | None = None, chunk: int = 65536) -> np.ndarray:
        """``n`` identity centres (float32), written into ``out`` when given (chunked: little extra memory)."""
        out = np.empty((n, DIM), np.float32) if out is None else out
        a = self.mix
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            real = self.centres[rng.integers(0, len(self.centres), m)]
            z = rng.standard_normal((m, DIM), dtype=np.float32) @ self.between.T
            out[s : s + m] = self.mu + np.sqrt(a) * (real - self.mu) + np.sqrt(1 - a) * z
        return out

    def faces(self, centres: np.ndarray, rng: np.random.Generator, out: np.ndarray | None = None, chunk: int = 65536) -> np.ndarray:
        """One face (descriptor) per centre: the centre plus within-person noise."""
        out = np.empty_like(centres, dtype=np.float32) if out is None else out
        for s in range(0, len(centres), chunk):
            e = min(len(centres), s + chunk)
            out[s:e] = centres[s:e] + rng.standard_normal((e - s, DIM), dtype=np.float32) @ self.within.T
        return out


def _chol(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))).astype(np.float32)  # L with L L^T = C


def fit_model(descriptors: np.ndarray, people: np.ndarray, source: str = "given") -> DescriptorModel:
    """Fit the model to real ``descriptors`` (N, 128) of ``people`` (N,) labels."""
    x = np.asarray(descriptors, np.float64)
    _, inv = np.unique(people, return_inverse=True)
    counts = np.bincount(inv)
    centres = np.zeros((len(counts), DIM))
    np.add.at(centres, inv, x)
    centres /= counts[:, None]
    resid = (x - centres[inv])[counts[inv] > 1]
    dof = max(1, len(resid) - int((counts > 1).sum()))
    within = resid.T @ resid / dof  # unbiased: each person's own mean was subtracted
    between = np.cov(centres.T) - within * np.mean(1.0 / counts)  # the centres still hold some face noise
    w, v = np.linalg.eigh(between)
    between = (v * np.clip(w, 1e-8, None)) @ v.T
    return DescriptorModel(centres.mean(0).astype(np.float32), centres.astype(np.float32), _chol(between), _chol(within), source)


def fallback_model(seed: int = 0) -> DescriptorModel:
    """An isotropic stand-in (no real descriptors at hand): same-person ~0.43, others ~0.82."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(0, 0.1, DIM).astype(np.float32)
    sw = 0.43 / np.sqrt(2 * DIM)
    sb = np.sqrt(max(0.82**2 - 0.43**2, 1e-6) / (2 * DIM))
    centres = (mu + rng.normal(0, sb, (512, DIM))).astype(np.float32)
    eye = np.eye(DIM, dtype=np.float32)
    return DescriptorModel(mu, centres, eye * sb, eye * sw, "isotropic fallback")


def load_model(path: Path | None = None) -> DescriptorModel:
    """The model fitted to the cached LFW descriptors, or the fallback when they are absent."""
    path = Path(path or LFW_CACHE)
    if not path.exists():
        return fallback_model()
    d = np.load(path)
    ok = d["ok"]
    people = np.array([str(p).replace("\\", "/").split("/")[-2] for p in d["paths"][ok]])
    return fit_model(d["plain"][ok], people, f"fitted to {int(ok.sum())} LFW descriptors of {len(set(people))} people")


@dataclass
class Gallery:
    templates: np.ndarray  # (N, 128) float32
    labels: np.ndarray  # (N,) int64: identity = row
    probes: np.ndarray  # (Q, 128) float32
    probe_labels: np.ndarray  # (Q,) gallery row of member probes, -1 for non-members


def synthetic_gallery(n: int, n_probes: int = 1000, member_fraction: float = 0.5, seed: int = 0,
                      model: DescriptorModel | None = None) -> Gallery:
    """``n`` templates (one per identity) and ``n_probes`` probes, members first. Memory: ~2 x n x 512 B at peak."""
    model = model or load_model()
    rng = np.random.default_rng([seed, 0])  # the templates do not depend on the probes asked for
    prng = np.random.default_rng([seed, 1])
    t = model.identities(n, rng)
    n_mem = int(round(n_probes * member_fraction))
    who = prng.choice(n, n_mem, replace=False) if n_mem <= n else prng.integers(0, n, n_mem)
    member_probes = model.faces(t[who], prng)
    model.faces(t, rng, out=t)  # templates: one face per identity, in place
    others = model.faces(model.identities(n_probes - n_mem, prng), prng)
    probes = np.concatenate([member_probes, others]).astype(np.float32)
    return Gallery(t, np.arange(n, dtype=np.int64), probes, np.concatenate([who, -np.ones(n_probes - n_mem, np.int64)]))


def recall_at_1(exact_labels: np.ndarray, labels: np.ndarray) -> float:
    """Share of probes whose top-1 template is the exact search's top-1 (template rows or labels)."""
    e, a = np.asarray(exact_labels).reshape(-1), np.asarray(labels).reshape(-1)
    return float((e == a).mean()) if len(e) else 1.0


def exact_top1(templates: np.ndarray, probes: np.ndarray, block: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest template (row, distance) by brute force in float64 re-ranking: the reference."""
    from ..watchlist.faiss_index import BlockedExactIndex

    idx = BlockedExactIndex(templates.shape[1], block=block)
    idx.add(templates, np.arange(len(templates)))
    d, lab = idx.search(probes, 1)
    return lab[:, 0], d[:, 0]
