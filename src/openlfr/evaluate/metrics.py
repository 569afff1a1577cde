"""Verification and identification metrics, pure numpy.

Scores throughout are *dissimilarities* (descriptor distances, or normalised distances): lower
means more alike, and a comparison is accepted ("same person", "alert") when ``score < t``, the
convention of ``openlfr compare``.

Verification (LFW View 2)
    :func:`parse_pairs` reads a pairs file; :func:`kfold_accuracy` picks, for each fold, the
    threshold that maximises accuracy on the *other* folds and measures the fold at it;
    :func:`roc_curve` and :func:`tar_at_far` give the ROC and the operating point at a fixed FAR.

Open-set identification (1:N, NIST FRVT vocabulary)
    :func:`search` finds each probe's best gallery candidate; with it, for a threshold ``t``:
    FPIR(t) = fraction of non-mated probes whose best score is below ``t``;
    FNIR(t) = fraction of mated probes whose mate is not returned at rank 1 with a score below
    ``t``. :func:`fnir_at_fpir` fixes ``t`` as the largest threshold with FPIR(t) <= target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


# --------------------------------------------------------------------------- pairs files


class PairsError(ValueError):
    """A pairs file that does not follow LFW's pairs.txt format."""


@dataclass(frozen=True)
class Pair:
    name1: str
    index1: int
    name2: str
    index2: int
    same: bool
    fold: int  # 0-based


def parse_pairs(text: str, source: str = "<pairs>") -> tuple[int, int, list[Pair]]:
    """Parse LFW's ``pairs.txt`` format.

    First line ``folds<TAB>n``; then, for each fold, ``n`` matched lines ``name i j`` followed by
    ``n`` mismatched lines ``name1 i name2 j`` (image numbers start at 1). Fields may be separated
    by tabs or spaces. Returns ``(folds, n, pairs)``; any deviation raises :class:`PairsError`
    naming the line.
    """
    lines = [(no, ln.split()) for no, ln in enumerate(text.splitlines(), 1)]
    lines = [(no, f) for no, f in lines if f]  # blank lines carry nothing
    if not lines:
        raise PairsError(f"{source}: empty pairs file")
    no, head = lines[0]
    if len(head) != 2 or not all(_is_int(v) for v in head):
        raise PairsError(f"{source}:{no}: header must be 'folds<TAB>pairs_per_fold', got {' '.join(head)!r}")
    folds, n = int(head[0]), int(head[1])
    if folds < 1 or n < 1:
        raise PairsError(f"{source}:{no}: folds and pairs per fold must be positive, got {folds} and {n}")
    body = lines[1:]
    expected = folds * 2 * n
    if len(body) != expected:
        raise PairsError(
            f"{source}: header promises {folds} folds x (2 x {n}) = {expected} pair lines, found {len(body)}"
        )
    pairs = []
    for k, (no, f) in enumerate(body):
        fold, within = divmod(k, 2 * n)
        same = within < n
        if same:
            if len(f) != 3 or not (_is_int(f[1]) and _is_int(f[2])):
                raise PairsError(
                    f"{source}:{no}: fold {fold + 1} line {within + 1} should be a matched pair 'name i j', "
                    f"got {' '.join(f)!r}"
                )
            p = Pair(f[0], int(f[1]), f[0], int(f[2]), True, fold)
        else:
            if len(f) != 4 or not (_is_int(f[1]) and _is_int(f[3])):
                raise PairsError(
                    f"{source}:{no}: fold {fold + 1} line {within + 1} should be a mismatched pair "
                    f"'name1 i name2 j', got {' '.join(f)!r}"
                )
            p = Pair(f[0], int(f[1]), f[2], int(f[3]), False, fold)
        if p.index1 < 1 or p.index2 < 1:
            raise PairsError(f"{source}:{no}: image numbers start at 1, got {' '.join(f)!r}")
        pairs.append(p)
    return folds, n, pairs


def read_pairs(path: str | Path) -> tuple[int, int, list[Pair]]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PairsError(f"{p}: cannot read pairs file ({e})") from None
    return parse_pairs(text, str(p))


def lfw_image_path(images: str | Path, name: str, index: int) -> Path:
    """``images/name/name_%04d.jpg``, LFW's layout."""
    return Path(images) / name / f"{name}_{index:04d}.jpg"


def _is_int(s: str) -> bool:
    return s.isdigit()


# --------------------------------------------------------------------------- verification


def pairwise_distances(a: np.ndarray, b: np.ndarray, chunk: int = 512, dtype=np.float64) -> np.ndarray:
    """(len(a), len(b)) Euclidean distances, accumulated in float64 over row chunks of ``a``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    out = np.empty((len(a), len(b)), dtype)
    bb = (b * b).sum(1)
    for i in range(0, len(a), chunk):
        x = a[i : i + chunk]
        d2 = (x * x).sum(1)[:, None] + bb[None, :] - 2.0 * (x @ b.T)
        out[i : i + chunk] = np.sqrt(np.maximum(d2, 0.0))
    return out


def accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Fraction of pairs classified right when ``score < threshold`` means "same"."""
    scores, same = np.asarray(scores, float), np.asarray(same, bool)
    return float(np.mean((scores < threshold) == same))


def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The threshold that maximises accuracy on these pairs, and that accuracy.

    Candidates are the midpoints between consecutive distinct scores, plus one below the lowest
    and one above the highest (accept none, accept all). When several candidates reach the same
    best accuracy, the middle one of them (by threshold order; the lower middle for an even
    count) is taken, which keeps the choice away from the edges of a plateau.
    """
    s, y = np.asarray(scores, float), np.asarray(same, bool)
    if s.size == 0:
        raise ValueError("no pairs")
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    # Accepting the k lowest scores, k = 0..n; only k at a boundary between distinct scores is real.
    same_below = np.concatenate([[0], np.cumsum(y)])
    diff_below = np.concatenate([[0], np.cumsum(~y)])
    correct = same_below + (diff_below[-1] - diff_below)
    valid = np.ones(s.size + 1, bool)
    valid[1:-1] = s[1:] != s[:-1]
    ks = np.flatnonzero(valid)
    acc = correct[ks] / s.size
    best = ks[np.flatnonzero(acc == acc.max())]
    k = int(best[(len(best) - 1) // 2])
    if k == 0:
        t = s[0] - 1e-6
    elif k == s.size:
        t = s[-1] + 1e-6
    else:
        t = (s[k - 1] + s[k]) / 2
    return float(t), float(correct[k] / s.size)


@dataclass
class KFold:
    accuracies: np.ndarray  # per fold, at the threshold chosen on the other folds
    thresholds: np.ndarray  # per fold

    @property
    def mean(self) -> float:
        return float(self.accuracies.mean())

    @property
    def std(self) -> float:
        """Sample standard deviation over folds (ddof=1; 0 for a single fold)."""
        return float(self.accuracies.std(ddof=1)) if len(self.accuracies) > 1 else 0.0

    @property
    def standard_error(self) -> float:
        """Standard error of the mean, std / sqrt(folds): the figure LFW's protocol asks for."""
        return self.std / math.sqrt(len(self.accuracies))


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> KFold:
    """Leave-one-fold-out: each fold is measured at the best threshold of the other folds."""
    s, y, f = np.asarray(scores, float), np.asarray(same, bool), np.asarray(folds)
    ids = np.unique(f)
    if len(ids) < 2:
        raise ValueError("k-fold accuracy needs at least two folds")
    accs, ts = [], []
    for k in ids:
        test = f == k
        t, _ = best_threshold(s[~test], y[~test])
        ts.append(t)
        accs.append(accuracy_at(s[test], y[test], t))
    return KFold(np.array(accs), np.array(ts))


@dataclass
class Roc:
    far: np.ndarray  # false accept rate, non-decreasing, from 0 to 1
    tar: np.ndarray  # true accept rate
    thresholds: np.ndarray  # accept score < threshold gives (far[i], tar[i])


def roc_curve(scores: np.ndarray, same: np.ndarray) -> Roc:
    """ROC over every distinct operating point (the first point accepts nothing)."""
    s, y = np.asarray(scores, float), np.asarray(same, bool)
    n_gen, n_imp = int(y.sum()), int((~y).sum())
    if n_gen == 0 or n_imp == 0:
        raise ValueError("ROC needs both genuine and impostor pairs")
    v = np.unique(s)  # accept score <= v[i], i.e. score < the midpoint to the next value
    tar = np.searchsorted(np.sort(s[y]), v, side="right") / n_gen
    far = np.searchsorted(np.sort(s[~y]), v, side="right") / n_imp
    nxt = np.append(v[1:], v[-1] + 2e-6)
    return Roc(
        far=np.concatenate([[0.0], far]),
        tar=np.concatenate([[0.0], tar]),
        thresholds=np.concatenate([[v[0] - 1e-6], (v + nxt) / 2]),
    )


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> tuple[float, float, float]:
    """Highest TAR whose FAR does not exceed ``far``: ``(tar, far_reached, threshold)``."""
    roc = roc_curve(scores, same)
    ok = np.flatnonzero(roc.far <= far + 1e-12)
    i = int(ok[-1])  # FAR and TAR are non-decreasing: the last admissible point has the best TAR
    return float(roc.tar[i]), float(roc.far[i]), float(roc.thresholds[i])


# --------------------------------------------------------------------------- open-set 1:N


@dataclass
class SearchResult:
    best: np.ndarray  # (P,) the lowest score of each probe over the gallery
    best_id: np.ndarray  # (P,) gallery identity at rank 1


def search(scores: np.ndarray, gallery_ids: np.ndarray) -> SearchResult:
    """Rank-1 candidate of each probe from a (probes, gallery entries) score matrix.

    Several entries may share an identity (multi-reference galleries); the best entry counts.
    """
    m = np.asarray(scores, float)
    gid = np.asarray(gallery_ids)
    if m.ndim != 2 or m.shape[1] != len(gid) or m.shape[1] == 0:
        raise ValueError(f"scores must be (probes, {len(gid)}) with a non-empty gallery, got {m.shape}")
    j = np.argmin(m, axis=1) if m.shape[0] else np.zeros(0, int)
    return SearchResult(m[np.arange(m.shape[0]), j], gid[j])


def rank1_rate(result: SearchResult, probe_ids: np.ndarray) -> float:
    """Fraction of mated probes whose rank-1 candidate is their mate (no threshold)."""
    return float(np.mean(result.best_id == np.asarray(probe_ids)))


def fpir(nonmated_best: np.ndarray, threshold: float) -> float:
    return float(np.mean(np.asarray(nonmated_best, float) < threshold))


def fnir(mated_best: np.ndarray, mated_hit: np.ndarray, threshold: float) -> float:
    """``mated_hit``: the rank-1 candidate is the probe's mate."""
    return float(1.0 - np.mean(np.asarray(mated_hit, bool) & (np.asarray(mated_best, float) < threshold)))


def threshold_at_fpir(nonmated_best: np.ndarray, target: float) -> float:
    """The largest threshold with FPIR <= target (accepting ``score < t``).

    With N non-mated probes at most ``floor(target * N)`` may pass; the threshold is the score of
    the next one in ascending order (``inf`` when all may pass). Ties at that score are rejected.
    """
    nm = np.sort(np.asarray(nonmated_best, float))
    if nm.size == 0:
        raise ValueError("no non-mated probes")
    allowed = int(math.floor(target * nm.size + 1e-9))
    return float(nm[allowed]) if allowed < nm.size else math.inf


@dataclass
class OperatingPoint:
    target_fpir: float
    threshold: float
    fpir: float
    fnir: float


def fnir_at_fpir(mated_best: np.ndarray, mated_hit: np.ndarray, nonmated_best: np.ndarray, target: float) -> OperatingPoint:
    t = threshold_at_fpir(nonmated_best, target)
    return OperatingPoint(target, t, fpir(nonmated_best, t), fnir(mated_best, mated_hit, t))


@dataclass
class Det:
    fpir: np.ndarray  # increasing threshold order
    fnir: np.ndarray
    thresholds: np.ndarray


def det_curve(mated_best: np.ndarray, mated_hit: np.ndarray, nonmated_best: np.ndarray) -> Det:
    """FNIR against FPIR at every distinct score of either probe set (accept ``score < t``)."""
    mb, hit = np.asarray(mated_best, float), np.asarray(mated_hit, bool)
    nm = np.sort(np.asarray(nonmated_best, float))
    t = np.unique(np.concatenate([mb, nm, [math.inf]]))
    hits = np.sort(mb[hit])
    f_p = np.searchsorted(nm, t, side="left") / nm.size
    f_n = 1.0 - np.searchsorted(hits, t, side="left") / max(mb.size, 1)
    return Det(f_p, f_n, t)
