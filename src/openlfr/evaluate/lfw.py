"""LFW View 2: verification accuracy over the folds of a pairs file.

For each fold, the threshold is the one that maximises accuracy on the other folds, and the fold's
accuracy is measured at it; the mean and the standard deviation over folds are reported (and the
standard error, std / sqrt(folds), which LFW's protocol asks for). Also: accuracy at the fixed
distance 0.6 (dlib's published threshold), TAR at FAR 0.1% over all pairs, the ROC, and which
images needed a fallback because the first detector found no face.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import metrics
from .embedding import EmbedOptions, embed_images

FIXED_THRESHOLD = 0.6
FAR_TARGET = 0.001


class EvaluationError(RuntimeError):
    """The data does not allow the evaluation (missing or unreadable images, empty sets)."""


@dataclass
class LfwResult:
    summary: dict  # JSON-ready
    roc: metrics.Roc


def evaluate_lfw(
    images: Path, pairs_file: Path, options: EmbedOptions = EmbedOptions(), *, progress: bool = True, use_cache: bool = True
) -> LfwResult:
    folds, per_fold, pairs = metrics.read_pairs(pairs_file)
    paths = [metrics.lfw_image_path(images, n, i) for p in pairs for n, i in ((p.name1, p.index1), (p.name2, p.index2))]
    missing = sorted({str(q) for q in paths if not q.is_file()})
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise EvaluationError(f"{len(missing)} image(s) named in {pairs_file} are missing: {', '.join(missing[:5])}{more}")
    emb = embed_images(paths, options, progress=progress, use_cache=use_cache)
    if emb.errors:
        bad = list(emb.errors.values())
        raise EvaluationError(f"{len(bad)} image(s) could not be read: " + "; ".join(bad[:5]))
    at = emb.index()
    a = emb.descriptors[[at[q] for q in paths[0::2]]]
    b = emb.descriptors[[at[q] for q in paths[1::2]]]
    dist = np.linalg.norm(a - b, axis=1).astype(float)
    same = np.array([p.same for p in pairs])
    fold = np.array([p.fold for p in pairs])

    kf = metrics.kfold_accuracy(dist, same, fold)
    tar, far_reached, t_far = metrics.tar_at_far(dist, same, FAR_TARGET)
    roc = metrics.roc_curve(dist, same)
    summary = {
        "protocol": "LFW View 2: leave-one-fold-out threshold, accuracy per fold",
        "pairs_file": str(pairs_file),
        "images": str(images),
        "options": options.as_dict(),
        "method": options.describe(),
        "folds": folds,
        "pairs_per_fold": per_fold,
        "n_pairs": len(pairs),
        "n_images": len(emb.paths),
        "accuracy": kf.mean,
        "accuracy_std": kf.std,
        "accuracy_se": kf.standard_error,
        "fold_accuracies": [float(v) for v in kf.accuracies],
        "fold_thresholds": [round(float(v), 6) for v in kf.thresholds],
        "accuracy_at_0.6": metrics.accuracy_at(dist, same, FIXED_THRESHOLD),
        "tar_at_far_0.001": tar,
        "tar_at_far_0.001_threshold": round(t_far, 6),
        "far_reached": far_reached,
        "genuine_distance_mean": float(dist[same].mean()),
        "impostor_distance_mean": float(dist[~same].mean()),
        "no_face": emb.fallbacks(root=Path(images)),
        "seconds": emb.stats.get("seconds"),
        "cache": {k: v for k, v in emb.stats.items() if k != "seconds"},
    }
    return LfwResult(summary, roc)
