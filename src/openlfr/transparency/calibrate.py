"""Threshold calibration on identity folders: the threshold that meets a target FPIR for a
watchlist of N subjects, and the TPIR to expect there, with a confidence interval.

Why: a fixed distance does not fit every watchlist. Measured on held-out LFW against an
874-subject watchlist, dlib's distance 0.6 gives TPIR 95.5% but FPIR 84% (nearly every passer-by
alerts against *someone*); 0.5 gives 84% and 8.6%; 0.4 gives 37% and 0.2%. The more subjects, the
more chances a stranger has to come close to one of them, so the threshold has to come down as
the watchlist grows, and the TPIR with it.

Method (``DIR/<identity>/<image>``, images sorted by name):

- **references**: the first readable image of every identity, embedded as enrolment does
  (descriptor averaged with the mirrored chip); **probes**: every image, embedded as a live probe
  is (plain). Faces are found with the evaluation's policy (``openlfr.evaluate.embedding``).
- **mated scores**: each image of an identity other than its reference, against that reference
  (identities with one image give none);
- **non-mated scores**: every reference against every image of every *other* identity; their
  distribution gives the single-comparison false match rate ``p(t) = P(d < t)``.
- **FPIR(t, N) by the independence formula**: ``1 - (1 - p(t))^N``: a stranger has N chances.
  Comparisons of one face with many are not independent (some faces are close to many others),
  which makes the formula an over-estimate at large N;
- **FPIR(t, N) by direct simulation**, when there are more identities than N: ``replicates``
  galleries of N identities drawn at random (their references), every image of the identities
  left out searched against each; FPIR = the pooled fraction whose nearest reference is closer
  than ``t``;
- **the threshold**: the largest ``t`` whose FPIR stays at or below the target, by each method;
  ``cautious`` (the default) takes the smaller of the two (the independence one when the
  simulation is not possible);
- **TPIR(t)**: the fraction of mated scores below ``t`` (an alert for the right subject), with a
  95% Wilson interval (counting each probe as independent) and a bootstrap interval resampling
  identities (probes of one person are not independent; this is the one to quote).

Everything is seeded; the same data and options give the same figures.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .rates import wilson_interval

METHODS = ("cautious", "independence", "direct")
LABEL_ERROR_DISTANCE = 0.2  # a non-mated pair this close is almost surely one photo under two names
TAIL_CAP = 0.75  # non-mated distances below this are kept exactly (thresholds live below it)
HIST_STEP = 0.0025
CURVE = np.round(np.arange(0.30, 0.7001, 0.01), 3)
OPERATING_POINTS = (0.4, 0.5, 0.6)
MIN_OUTSIDE_IDENTITIES = 10  # identities left out of a simulated gallery, at the least
BOOTSTRAP = 2000


class CalibrationError(ValueError):
    """The data does not allow a calibration (too few identities, no mated or non-mated scores)."""


@dataclass
class CalibrationSet:
    """Descriptors of identity folders, split into references and probes."""

    identities: list[str]
    ref_identity: np.ndarray  # (R,) index into identities (one reference per identity)
    ref_paths: list[Path]
    refs: np.ndarray  # (R, 128) flip-averaged descriptors
    probe_identity: np.ndarray  # (P,) index into identities
    probe_paths: list[Path]
    probes: np.ndarray  # (P, 128) plain descriptors
    probe_is_ref: np.ndarray  # (P,) bool: the image is its identity's reference image
    root: str = ""
    unreadable: dict = field(default_factory=dict)
    embed_seconds: float = 0.0
    method: str = ""


def embed_identities(
    identities: dict[str, list[Path]],
    *,
    root: str | Path = "",
    flip_references: bool = True,
    progress: bool = False,
    use_cache: bool = True,
) -> CalibrationSet:
    """Embed identity folders (``{identity: [images sorted by name]}``) for calibration."""
    from ..evaluate.embedding import EmbedOptions, embed_images

    names = [n for n in identities if identities[n]]
    all_paths = [Path(p) for n in names for p in identities[n]]
    t0 = time.perf_counter()
    plain = embed_images(all_paths, EmbedOptions(), progress=progress, use_cache=use_cache)
    at = plain.index()
    ref_of: dict[str, Path] = {}
    for n in names:
        ok = [Path(p) for p in identities[n] if Path(p) in at]
        if ok:
            ref_of[n] = ok[0]
    if flip_references:
        flipped = embed_images(list(ref_of.values()), EmbedOptions(flip=True), progress=progress, use_cache=use_cache)
        fat = flipped.index()
        ref_desc = {n: flipped.descriptors[fat[p]] for n, p in ref_of.items() if p in fat}
    else:
        ref_desc = {n: plain.descriptors[at[p]] for n, p in ref_of.items()}
    kept = [n for n in names if n in ref_desc]
    index = {n: i for i, n in enumerate(kept)}
    probe_paths, probe_identity, probe_rows, is_ref = [], [], [], []
    for n in kept:
        for p in identities[n]:
            p = Path(p)
            if p in at:
                probe_paths.append(p)
                probe_identity.append(index[n])
                probe_rows.append(at[p])
                is_ref.append(p == ref_of[n])
    return CalibrationSet(
        identities=kept,
        ref_identity=np.arange(len(kept)),
        ref_paths=[ref_of[n] for n in kept],
        refs=np.stack([ref_desc[n] for n in kept]).astype(np.float32) if kept else np.zeros((0, 128), np.float32),
        probe_identity=np.array(probe_identity, np.int64),
        probe_paths=probe_paths,
        probes=plain.descriptors[probe_rows].astype(np.float32) if probe_rows else np.zeros((0, 128), np.float32),
        probe_is_ref=np.array(is_ref, bool),
        root=str(root),
        unreadable={str(k): v for k, v in plain.errors.items()},
        embed_seconds=round(time.perf_counter() - t0, 1),
        method=("references: " + EmbedOptions(flip=flip_references).describe() + "; probes: " + EmbedOptions().describe()),
    )


def distances(a: np.ndarray, b: np.ndarray, chunk: int = 512) -> np.ndarray:
    """(len(a), len(b)) Euclidean distances, float32, computed in row chunks."""
    from ..evaluate.metrics import pairwise_distances

    return pairwise_distances(a, b, chunk, np.float32)


# --------------------------------------------------------------------------- scores


@dataclass
class Scores:
    """What calibration needs from a CalibrationSet, computed once."""

    d: np.ndarray  # (R, P) distances references x probes
    mated: np.ndarray  # (M,) distance of each non-reference probe to its own reference
    mated_identity: np.ndarray  # (M,) identity index
    mated_probe: np.ndarray  # (M,) probe index
    nonmated_tail: np.ndarray  # sorted non-mated distances below TAIL_CAP
    nonmated_hist: np.ndarray  # counts per HIST_STEP bin on [0, 2)
    n_nonmated: int
    closest_nonmated: list[dict]


def read_same_person(path: str | Path) -> list[tuple[str, str]]:
    """Pairs of identity folders that are the same person (label errors: one photo under two names,
    two spellings), one pair per line: ``identity_a,identity_b`` (a header and ``#`` comments allowed)."""
    out = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8-sig").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [x.strip() for x in line.split(",")]
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise CalibrationError(f"{path}:{i}: expected identity_a,identity_b")
        if i == 1 and parts[0].lower() in ("identity_a", "a", "identity", "first"):
            continue
        out.append((parts[0], parts[1]))
    return out


def score(cs: CalibrationSet, same_person: list[tuple[str, str]] | None = None) -> Scores:
    """Mated and non-mated scores; ``same_person`` pairs (label errors) are neither."""
    if len(cs.identities) < 2:
        raise CalibrationError("calibration needs at least two identities")
    d = distances(cs.refs, cs.probes)
    own = cs.probe_identity  # reference row of identity i is row i
    mp = np.flatnonzero(~cs.probe_is_ref)
    mated = d[own[mp], mp]
    at = {n: i for i, n in enumerate(cs.identities)}
    for a, b in same_person or []:
        if a in at and b in at:  # neither mated nor non-mated: out of every comparison
            d[at[a], cs.probe_identity == at[b]] = np.inf
            d[at[b], cs.probe_identity == at[a]] = np.inf
    bins = int(round(2.0 / HIST_STEP))
    hist = np.zeros(bins, np.int64)
    tail_parts = []
    n_nonmated = 0
    closest: list[tuple[float, int, int]] = []
    for r in range(d.shape[0]):
        row = d[r]
        other = cs.probe_identity != cs.ref_identity[r]
        v = row[other]
        v = v[np.isfinite(v)]
        n_nonmated += v.size
        hist += np.bincount(np.minimum((v / HIST_STEP).astype(np.int64), bins - 1), minlength=bins)
        tail_parts.append(v[v < TAIL_CAP])
        if v.size:
            j = int(np.argmin(np.where(other, row, np.inf)))
            closest.append((float(row[j]), r, j))
    tail = np.sort(np.concatenate(tail_parts)) if tail_parts else np.zeros(0, np.float32)
    closest.sort()
    close = [
        {"reference": cs.identities[r], "probe_identity": cs.identities[int(cs.probe_identity[j])],
         "probe_image": _rel(cs.probe_paths[j], cs.root), "distance": round(dist, 4)}
        for dist, r, j in closest[:10]
    ]
    return Scores(d, mated, own[mp], mp, tail, hist, n_nonmated, close)


def _rel(p: Path, root: str) -> str:
    try:
        return str(Path(p).relative_to(root)) if root else str(p)
    except ValueError:
        return str(p)


def single_fmr(sc: Scores, t: float | np.ndarray) -> np.ndarray | float:
    """p(t): fraction of non-mated comparisons with distance < t (exact below TAIL_CAP)."""
    t_arr = np.atleast_1d(np.asarray(t, np.float64))
    out = np.empty(t_arr.shape, np.float64)
    below = t_arr <= TAIL_CAP
    out[below] = np.searchsorted(sc.nonmated_tail, t_arr[below], side="left") / max(sc.n_nonmated, 1)
    if (~below).any():
        cum = np.concatenate([[0], np.cumsum(sc.nonmated_hist)])
        idx = np.clip((t_arr[~below] / HIST_STEP).astype(np.int64), 0, len(cum) - 1)
        out[~below] = cum[idx] / max(sc.n_nonmated, 1)
    return out if np.ndim(t) else float(out[0])


def fpir_independent(p: np.ndarray | float, n: int) -> np.ndarray | float:
    """1 - (1 - p)^n without cancellation."""
    p = np.clip(np.asarray(p, np.float64), 0.0, 1.0 - 1e-15)
    r = -np.expm1(n * np.log1p(-p))
    return r if r.ndim else float(r)


def per_comparison_target(target_fpir: float, n: int) -> float:
    """The p(t) at which 1 - (1 - p)^n equals the target."""
    return float(-np.expm1(np.log1p(-target_fpir) / n))


def threshold_independent(sc: Scores, n: int, target_fpir: float) -> tuple[float, int]:
    """Largest t with 1 - (1 - p(t))^n <= target, and how many non-mated comparisons lie below it."""
    p_star = per_comparison_target(target_fpir, n)
    allowed = int(math.floor(p_star * sc.n_nonmated + 1e-9))
    if allowed < len(sc.nonmated_tail):
        return float(sc.nonmated_tail[allowed]), allowed
    return TAIL_CAP, len(sc.nonmated_tail)


@dataclass
class Simulation:
    n: int
    replicates: int
    best: np.ndarray  # pooled nearest-reference distance of every (replicate, outside probe)
    probe: np.ndarray  # pooled probe index
    replicate: np.ndarray  # pooled replicate number
    galleries: list[np.ndarray] = field(default_factory=list)  # identity indices of each gallery

    @property
    def trials(self) -> int:
        return int(self.best.size)

    def fpir(self, t: float | np.ndarray) -> np.ndarray | float:
        s = np.sort(self.best)
        r = np.searchsorted(s, np.asarray(t, np.float64), side="left") / max(s.size, 1)
        return r if np.ndim(r) else float(r)

    def per_replicate(self, t: float) -> np.ndarray:
        hits = np.bincount(self.replicate, weights=(self.best < t).astype(np.float64), minlength=self.replicates)
        cnt = np.bincount(self.replicate, minlength=self.replicates)
        return hits / np.maximum(cnt, 1)


def simulate(cs: CalibrationSet, sc: Scores, n: int, replicates: int = 50, seed: int = 0) -> Simulation | None:
    """Direct FPIR: galleries of ``n`` identities drawn at random; the others' images searched."""
    n_ids = len(cs.identities)
    if n < 1 or n_ids - n < MIN_OUTSIDE_IDENTITIES:
        return None
    rng = np.random.default_rng(seed)
    best, probe, rep, galleries = [], [], [], []
    for k in range(replicates):
        g = np.sort(rng.choice(n_ids, size=n, replace=False))
        inside = np.zeros(n_ids, bool)
        inside[g] = True
        out = np.flatnonzero(~inside[cs.probe_identity])
        b = sc.d[np.ix_(g, out)].min(axis=0) if len(g) else np.full(len(out), np.inf, np.float32)
        best.append(b)
        galleries.append(g)
        probe.append(out)
        rep.append(np.full(len(out), k, np.int64))
    return Simulation(n, replicates, np.concatenate(best), np.concatenate(probe), np.concatenate(rep), galleries)


def tpir_at(sc: Scores, t: float) -> float:
    return float(np.mean(sc.mated < t)) if sc.mated.size else float("nan")


def cluster_bootstrap(events: np.ndarray, trials: np.ndarray, b: int = BOOTSTRAP, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of sum(events)/sum(trials) resampling clusters (identities) with replacement."""
    events, trials = np.asarray(events, np.float64), np.asarray(trials, np.float64)
    if events.size < 2 or trials.sum() == 0:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, events.size, size=(b, events.size))
    e, n = events[idx].sum(1), trials[idx].sum(1)
    rates = e / np.maximum(n, 1e-12)
    a = (1 - level) / 2
    return float(np.quantile(rates, a)), float(np.quantile(rates, 1 - a))


def tpir_summary(sc: Scores, t: float, seed: int = 0) -> dict:
    hit = sc.mated < t
    k, n = int(hit.sum()), int(hit.size)
    ids = sc.mated_identity
    uniq, inv = np.unique(ids, return_inverse=True)
    ev = np.bincount(inv, weights=hit.astype(np.float64))
    tr = np.bincount(inv).astype(np.float64)
    w = wilson_interval(k, n) if n else None
    boot = cluster_bootstrap(ev, tr, seed=seed)
    return {
        "tpir": k / n if n else None,
        "hits": k,
        "mated_probes": n,
        "identities": int(len(uniq)),
        "ci95_wilson": None if w is None else [round(w[0], 5), round(w[1], 5)],
        "ci95_bootstrap_identities": None if boot is None else [round(boot[0], 5), round(boot[1], 5)],
        "tpir_per_identity_mean": float(np.mean(ev / tr)) if len(tr) else None,
    }


# --------------------------------------------------------------------------- the calibration


@dataclass
class Calibration:
    summary: dict  # JSON-ready: the evidence
    scores: Scores = field(repr=False)
    simulation: Simulation | None = field(default=None, repr=False)
    data: CalibrationSet | None = field(default=None, repr=False)


def calibrate(
    cs: CalibrationSet,
    watchlist_size: int,
    target_fpir: float,
    *,
    method: str = "cautious",
    replicates: int = 50,
    seed: int = 0,
    scores: Scores | None = None,
    same_person: list[tuple[str, str]] | None = None,
) -> Calibration:
    """The threshold for ``watchlist_size`` subjects at ``target_fpir``, with TPIR and its CI."""
    if watchlist_size < 1:
        raise CalibrationError("the watchlist size must be at least 1")
    if not 0.0 < target_fpir < 1.0:
        raise CalibrationError("the target FPIR must be between 0 and 1")
    if method not in METHODS:
        raise CalibrationError(f"method must be one of {', '.join(METHODS)}")
    sc = scores or score(cs, same_person)
    if sc.mated.size == 0:
        raise CalibrationError("no identity has two or more images: no mated score, so no TPIR")
    if sc.n_nonmated == 0:
        raise CalibrationError("no non-mated comparison")
    n = int(watchlist_size)
    t_ind, below = threshold_independent(sc, n, target_fpir)
    sim = simulate(cs, sc, n, replicates, seed)
    t_dir = None
    direct: dict | None = None
    notes: list[str] = []
    if sim is not None:
        from ..evaluate.metrics import threshold_at_fpir

        t_dir = float(threshold_at_fpir(sim.best, target_fpir))
        reliable = sim.trials * target_fpir >= 10
        direct = {"replicates": replicates, "trials": sim.trials, "threshold": round(t_dir, 6),
                  "reliable": bool(reliable),
                  "outside_probes_per_gallery": round(sim.trials / replicates, 1)}
        if not reliable:
            notes.append(f"the simulation has {sim.trials} searches: too few to resolve an FPIR of {target_fpir:g} "
                         f"(at least {math.ceil(10 / target_fpir):,} are needed); its threshold is coarse")
    else:
        notes.append(f"the data holds {len(cs.identities)} identities, not enough to draw {n}-subject galleries and "
                     f"keep {MIN_OUTSIDE_IDENTITIES} identities out as strangers: FPIR by the independence formula only")
    if method == "direct" and t_dir is None:
        raise CalibrationError("the direct method needs more identities than the watchlist size; " + notes[-1])
    if method == "independence" or t_dir is None:
        chosen, how = t_ind, "independence formula"
    elif method == "direct":
        chosen, how = t_dir, "direct simulation"
    else:
        chosen, how = (t_ind, "independence formula (the smaller)") if t_ind <= t_dir else (t_dir, "direct simulation (the smaller)")
    if sc.closest_nonmated and sc.closest_nonmated[0]["distance"] < LABEL_ERROR_DISTANCE:
        close = [c for c in sc.closest_nonmated if c["distance"] < LABEL_ERROR_DISTANCE]
        notes.append(f"{len(close)} of the closest non-mated pairs are nearer than {LABEL_ERROR_DISTANCE} (e.g. "
                     f"{close[0]['reference']} / {close[0]['probe_identity']} at {close[0]['distance']}): at that distance "
                     "they are very likely the same photo or the same person under two names (label errors), which "
                     "lowers the threshold; check them and list true label errors with --same-person")
    if below < 20:
        notes.append(f"only {below} non-mated comparison(s) lie below the independence threshold: the tail is thinly "
                     "observed, so the threshold is uncertain; more identities would firm it up")
    fp_ind = float(fpir_independent(single_fmr(sc, chosen), n))
    fp_dir = None if sim is None else float(sim.fpir(chosen))
    tp = tpir_summary(sc, chosen, seed=seed)
    points = []
    for t in sorted(set(OPERATING_POINTS) | {round(chosen, 6)}):
        points.append({
            "threshold": t,
            "tpir": round(tpir_at(sc, t), 5),
            "fmr_single": float(single_fmr(sc, t)),
            "fpir_independent": round(float(fpir_independent(single_fmr(sc, t), n)), 6),
            "fpir_direct": None if sim is None else round(float(sim.fpir(t)), 6),
        })
    curve_p = single_fmr(sc, CURVE)
    summary = {
        "kind": "openlfr threshold calibration",
        "version": 1,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "images": cs.root,
        "method": cs.method,
        "identities": len(cs.identities),
        "images_used": int(len(cs.probe_paths)),
        "unreadable": len(cs.unreadable),
        "references": int(len(cs.ref_paths)),
        "mated_scores": int(sc.mated.size),
        "mated_identities": int(len(np.unique(sc.mated_identity))),
        "nonmated_scores": int(sc.n_nonmated),
        "watchlist_size": n,
        "target_fpir": target_fpir,
        "threshold_method": method,
        "threshold": round(float(chosen), 6),
        "threshold_from": how,
        "threshold_independent": round(t_ind, 6),
        "nonmated_below_independent_threshold": int(below),
        "per_comparison_target": per_comparison_target(target_fpir, n),
        "direct": direct,
        "fpir_independent_at_threshold": fp_ind,
        "fpir_direct_at_threshold": fp_dir,
        "fpir_direct_range_over_galleries": None if sim is None else [
            round(float(np.quantile(sim.per_replicate(chosen), 0.05)), 6),
            round(float(np.quantile(sim.per_replicate(chosen), 0.95)), 6)],
        "tpir": tp["tpir"],
        "tpir_ci95": tp["ci95_bootstrap_identities"] or tp["ci95_wilson"],
        "tpir_detail": tp,
        "operating_points": points,
        "curve": {
            "thresholds": [float(t) for t in CURVE],
            "fmr_single": [float(x) for x in curve_p],
            "fpir_independent": [round(float(x), 6) for x in fpir_independent(curve_p, n)],
            "fpir_direct": None if sim is None else [round(float(x), 6) for x in sim.fpir(CURVE)],
            "tpir": [round(tpir_at(sc, float(t)), 5) for t in CURVE],
        },
        "closest_nonmated": sc.closest_nonmated[:5],
        "same_person_excluded": [list(p) for p in same_person or []],
        "seed": seed,
        "notes": notes,
        "embed_seconds": cs.embed_seconds,
    }
    return Calibration(summary, sc, sim, cs)


def calibrate_folder(images: Path, watchlist_size: int, target_fpir: float, *, method: str = "cautious",
                     replicates: int = 50, seed: int = 0, progress: bool = False, use_cache: bool = True,
                     same_person: list[tuple[str, str]] | None = None) -> Calibration:
    """``calibrate`` on a folder of identity folders."""
    from ..evaluate.identify import scan_identities

    found = scan_identities(Path(images))
    cs = embed_identities(found, root=images, progress=progress, use_cache=use_cache)
    return calibrate(cs, watchlist_size, target_fpir, method=method, replicates=replicates, seed=seed,
                     same_person=same_person)


def describe(s: dict) -> list[str]:
    """The calibration as plain sentences (console and report)."""
    from .rates import pct

    lines = [
        f"data: {s['identities']} identities, {s['images_used']} images ({s['mated_scores']} mated scores from "
        f"{s['mated_identities']} identities; {s['nonmated_scores']:,} non-mated comparisons)",
        f"threshold for a {s['watchlist_size']}-subject watchlist at FPIR {s['target_fpir']:g}: "
        f"{s['threshold']:.4f} (from the {s['threshold_from']})",
        f"  independence formula: {s['threshold_independent']:.4f} (per-comparison false match rate "
        f"{s['per_comparison_target']:.3g}; {s['nonmated_below_independent_threshold']} non-mated comparisons below it)",
    ]
    if s["direct"]:
        dr = s["fpir_direct_range_over_galleries"]
        lines.append(f"  direct simulation: {s['direct']['threshold']:.4f} ({s['direct']['replicates']} galleries, "
                     f"{s['direct']['trials']:,} searches); FPIR there over galleries {pct(dr[0], 3)} to {pct(dr[1], 3)}")
    ci = s["tpir_ci95"]
    lines.append(
        f"expected TPIR at {s['threshold']:.4f}: {pct(s['tpir'], 3)} (95% CI {pct(ci[0], 3)} to {pct(ci[1], 3)}, "
        f"resampling identities; {s['tpir_detail']['hits']} of {s['tpir_detail']['mated_probes']} mated probes)"
        if ci else f"expected TPIR at {s['threshold']:.4f}: {pct(s['tpir'], 3)}"
    )
    fd = s["fpir_direct_at_threshold"]
    lines.append(f"FPIR there: {pct(s['fpir_independent_at_threshold'], 3)} by the independence formula"
                 + (f", {pct(fd, 3)} measured directly" if fd is not None else ""))
    lines.append("operating points (threshold: TPIR, FPIR independence / direct):")
    for p in s["operating_points"]:
        lines.append(f"  {p['threshold']:.4f}: TPIR {pct(p['tpir'], 3)}, FPIR {pct(p['fpir_independent'], 3)}"
                     + (f" / {pct(p['fpir_direct'], 3)}" if p["fpir_direct"] is not None else ""))
    for n in s["notes"]:
        lines.append(f"note: {n}")
    return lines


def plot_calibration(cal: Calibration, out: Path | None = None) -> bytes:
    """Two panels: score distributions with the threshold; FPIR and TPIR against the threshold.

    Returns the PNG bytes (and writes them to ``out`` when given).
    """
    from .charts import figure_png, pyplot

    s = cal.summary
    sc = cal.scores
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    edges = np.arange(0, 1.2 + 1e-9, 0.01)
    centres = (edges[:-1] + edges[1:]) / 2
    nm = sc.nonmated_hist.reshape(-1, 4).sum(1)[: len(centres)] if len(sc.nonmated_hist) % 4 == 0 else None
    if nm is not None:
        a1.plot(centres, nm / max(sc.n_nonmated, 1), color="C3", lw=1.3, label="non-mated (different people)")
    m, _ = np.histogram(sc.mated, bins=edges)
    a1.plot(centres, m / max(sc.mated.size, 1), color="C0", lw=1.3, label="mated (same person)")
    a1.axvline(s["threshold"], color="k", ls="--", lw=1, label=f"threshold {s['threshold']:.3f}")
    a1.set_xlabel("descriptor distance")
    a1.set_ylabel("fraction of scores")
    a1.set_title("score distributions", fontsize=10)
    a1.legend(fontsize=8)
    c = s["curve"]
    floor = 1e-5
    a2.plot(c["thresholds"], np.maximum(c["fpir_independent"], floor), color="C3", label=f"FPIR (N={s['watchlist_size']}), independence")
    if c["fpir_direct"] is not None:
        a2.plot(c["thresholds"], np.maximum(c["fpir_direct"], floor), color="C1", ls="-.", label="FPIR, direct simulation")
    a2.plot(c["thresholds"], np.maximum(c["tpir"], floor), color="C0", label="TPIR")
    a2.axhline(s["target_fpir"], color="grey", ls=":", lw=1, label=f"target FPIR {s['target_fpir']:g}")
    a2.axvline(s["threshold"], color="k", ls="--", lw=1)
    a2.set_yscale("log")
    a2.set_ylim(floor, 1.1)
    a2.set_xlabel("threshold (alert when distance < threshold)")
    a2.set_ylabel("rate")
    a2.set_title(f"FPIR and TPIR against the threshold, {s['watchlist_size']} subjects", fontsize=10)
    a2.legend(fontsize=7, loc="lower right")
    a2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return figure_png(fig, plt, out)
