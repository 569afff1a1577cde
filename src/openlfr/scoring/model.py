"""The scoring model: raw distance -> Z-score against the subject's cohort -> a threshold that
depends on the probe's quality band and the watchlist's size.

Why one module: evaluation, calibration, ad hoc runs, deployments and their reports must decide
and describe alerts the same way, or the figures an authorising officer reads are not those of
the system that runs. The packaged table (``data/scoring_table.json``, made by
``bench/make_scoring_tables.py``) holds the bands and, per band and target FPIR, the Z-score
thresholds measured for watchlist sizes 1 to 2,000 (interpolated on log size between them,
extrapolated cautiously beyond).

At run start (:meth:`ScoringModel.for_watchlist`) each subject's cohort statistics turn the
band thresholds into one distance threshold per subject and band, so a search is the same
nearest-neighbour search as before and the decision a table look-up:
``alert when distance < mean_s + z(band, N) * std_s``.

Fusion with a second model (SFace, ``engine/sface.py``): a second packaged table
(``data/scoring_table_sface.json``, same bands) holds thresholds for the fused score
``z = (1 - w) * z_dlib + w * z_sface``, each model Z-normed against its own cohort. When a probe
and a subject both have the second model's feature, the subject's distance threshold for that
probe becomes ``mean_s + ((z_fused - w * z_sface) / (1 - w)) * std_s``: the same comparison of
dlib's distance, with a threshold moved by what SFace says (lower when SFace finds the faces
alike, higher when not). Otherwise dlib's own table decides, as before.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from .cohort import Prior, cohort_stats, subject_templates

TABLE_NAME = "scoring_table.json"
FUSED_TABLE_NAME = "scoring_table_sface.json"
TOO_POOR = "too poor to search"


class ScoringError(ValueError):
    """A scoring table or request that cannot be used (unknown band, target out of range...)."""


@dataclass(frozen=True)
class Band:
    name: str
    min_face_px: float  # face box width in the source image
    min_sharpness: float  # Quality.sharpness, in [0, 1]
    max_yaw: float  # |Quality.yaw| at most this
    calibrated_on: str  # the degradation level its thresholds were measured at
    label: str = ""

    def admits(self, face_px: float, sharpness: float, yaw: float) -> bool:
        return face_px >= self.min_face_px and sharpness >= self.min_sharpness and abs(yaw) <= self.max_yaw


@dataclass
class ScoringModel:
    """The packaged (or a given) scoring table, with look-ups."""

    table: dict

    def __post_init__(self):
        t = self.table
        if t.get("kind") != "openlfr scoring table":
            raise ScoringError("not an openlfr scoring table")
        self.bands = [Band(b["name"], float(b["min_face_px"]), float(b["min_sharpness"]), float(b["max_yaw"]),
                           str(b["calibrated_on"]), b.get("label", "")) for b in t["bands"]]
        c = t["cohort"]
        self.k = int(c["k"])
        self.prior = Prior(float(c["prior"]["mean"]), float(c["prior"]["std"]), float(c["prior"]["weight"]))
        self.targets = sorted(float(x) for x in t["targets"])
        f = t.get("fusion")
        self.second_name: str | None = f["second_model"] if f else None
        self.second_weight = float(f["weight"]) if f else 0.0
        self.second_k = int(f["second_cohort"]["k"]) if f else 0
        self.second_prior = (Prior(float(f["second_cohort"]["prior"]["mean"]), float(f["second_cohort"]["prior"]["std"]),
                                   float(f["second_cohort"]["prior"]["weight"])) if f else None)
        self.fused: ScoringModel | None = None  # the fused model beside this one (see ``with_fused``)

    def with_fused(self, fused: "ScoringModel") -> "ScoringModel":
        """Attach the fused model (its bands must be this model's)."""
        if fused.second_name is None:
            raise ScoringError("the fused table names no second model")
        if [(b.name, b.min_face_px, b.min_sharpness, b.max_yaw) for b in fused.bands] != \
                [(b.name, b.min_face_px, b.min_sharpness, b.max_yaw) for b in self.bands]:
            raise ScoringError("the fused scoring table's quality bands differ from the main table's")
        self.fused = fused
        return self

    @property
    def probe_flip(self) -> bool:
        """Probes are embedded flip-averaged (the chip and its mirror), as the thresholds were calibrated."""
        return bool(self.table.get("probe_flip", False))

    # ----------------------------------------------------------------- identity
    @property
    def version(self) -> str:
        """A short hash of the table (and of the fused table beside it): what a deployment records
        it was calibrated with."""
        h = hashlib.sha256(json.dumps(self.table, sort_keys=True).encode())
        if self.fused is not None:
            h.update(json.dumps(self.fused.table, sort_keys=True).encode())
        return h.hexdigest()[:12]

    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    # ----------------------------------------------------------------- bands
    def band_of(self, face_px: float, sharpness: float, yaw: float) -> int | None:
        """Index of the best band the face qualifies for (0 = best), or None: too poor to search."""
        for i, b in enumerate(self.bands):
            if b.admits(float(face_px), float(sharpness), float(yaw)):
                return i
        return None

    def band_of_face(self, face) -> int | None:
        """``band_of`` for an ``engine.pipeline.Face`` (box and quality)."""
        l, _, r, _ = face.box
        q = face.quality
        return self.band_of(float(r - l), float(q.sharpness), float(q.yaw))

    # ----------------------------------------------------------------- thresholds
    def _row(self, target: float) -> dict:
        for k, v in self.table["targets"].items():
            if abs(float(k) - target) <= 1e-12 * max(1.0, target):
                return v
        raise KeyError(target)

    def check_target(self, target: float) -> None:
        if not (self.targets[0] <= target <= self.targets[-1]):
            raise ScoringError(f"the scoring model is calibrated for target FPIRs {self.targets[0]:g} to "
                               f"{self.targets[-1]:g}; {target:g} is outside that range")

    def z_threshold(self, band: int, n: int, target: float) -> float:
        """The Z-score threshold of ``band`` for an ``n``-subject watchlist at ``target`` FPIR; never
        more lenient than a better band's (a worse face is never given more room)."""
        return min(self._z_band(b, n, target) for b in range(band + 1))

    def _z_band(self, band: int, n: int, target: float) -> float:
        self.check_target(target)
        if n < 1:
            raise ScoringError("the watchlist must hold at least one subject")
        ts = self.targets
        if target in ts:
            return self._z_at(self._row(target), band, n)
        # log-linear in the target between the two calibrated targets around it
        hi = next(i for i, t in enumerate(ts) if t > target)
        a, b = ts[hi - 1], ts[hi]
        za, zb = self._z_at(self._row(a), band, n), self._z_at(self._row(b), band, n)
        w = (math.log(target) - math.log(a)) / (math.log(b) - math.log(a))
        return min(za, za + w * (zb - za))

    def _z_at(self, row: dict, band: int, n: int) -> float:
        name = self.bands[band].name
        sizes = np.asarray(row["sizes"], np.float64)
        z = np.asarray(row["z"][name], np.float64)
        if n <= sizes[-1]:
            i = int(np.searchsorted(sizes, n))
            if sizes[i] == n:
                return float(z[i])
            # between two calibrated sizes: the stricter of their thresholds (Z scales differ by size)
            return float(min(z[i - 1], z[i]))
        ex = row["extrapolation"][name]
        p_star = -math.expm1(math.log1p(-float(row["target"])) / n)
        lp = np.log(np.asarray(ex["p"], np.float64))
        zz = np.asarray(ex["z"], np.float64)
        return float(min(z[-1], np.interp(math.log(p_star), lp, zz)))

    def expected(self, band: int, n: int, target: float) -> dict:
        """What calibration measured at the nearest calibrated size: FPIR reached and FNIR, with intervals."""
        self.check_target(target)
        t = min(self.targets, key=lambda x: abs(math.log(x) - math.log(target)))
        row = self._row(t)
        sizes = row["sizes"]
        i = int(np.argmin([abs(math.log(s) - math.log(n)) for s in sizes]))
        m = row["measured"][self.bands[band].name][i]
        # a worse band held to a better band's (stricter) threshold: FPIR is lower, FNIR higher than measured
        tightened = self.z_threshold(band, n, target) < self._z_band(band, n, target) - 1e-9
        return {"at_size": sizes[i], "at_target": t, "tightened": bool(tightened),
                **{k: m[k] for k in ("fpir", "fpir_ci95", "fnir", "fnir_ci95") if k in m}}

    # ----------------------------------------------------------------- per watchlist
    def for_watchlist(self, templates: np.ndarray, template_subject: np.ndarray, target: float,
                      reference_band: np.ndarray | None = None, second_templates: np.ndarray | None = None) -> "WatchlistScoring":
        """Cohort statistics of the watchlist's subjects and their distance threshold per band;
        with the second model's templates (NaN rows: none) and a fused table, those of the fusion too."""
        tpl, labels = subject_templates(templates, template_subject)
        n = len(labels)
        if n == 0:
            raise ScoringError("the watchlist holds no template")
        mean, std = cohort_stats(tpl, self.prior, self.k)
        z = np.array([self.z_threshold(b, n, target) for b in range(len(self.bands))])
        s_count = int(labels.max()) + 1
        full_mean = np.full(s_count, np.nan)
        full_std = np.full(s_count, np.nan)
        full_mean[labels], full_std[labels] = mean, std
        ref = np.zeros(s_count, np.int64) if reference_band is None else np.asarray(reference_band, np.int64)
        ws = WatchlistScoring(self, target, n, full_mean, full_std, z, ref)
        if self.fused is not None and second_templates is not None:
            same = self.fused.prior == self.prior and self.fused.k == self.k  # dlib's cohort as computed above
            ws.second = self.fused._second_part(templates, template_subject, second_templates, s_count, n, target,
                                                (full_mean, full_std) if same else None)
        return ws

    def _second_part(self, templates, template_subject, second_templates, s_count: int, n: int, target: float,
                     first_stats: tuple[np.ndarray, np.ndarray] | None = None):
        """The fused model's statistics: dlib's cohort (its prior; ``first_stats`` when already computed
        with it), the second model's cohort among the subjects that have its feature (unit-length mean
        of theirs), and the fused Z thresholds."""
        st = np.asarray(second_templates, np.float32)
        ok = np.isfinite(st).all(axis=1)
        if not ok.any():
            return None
        if first_stats is not None:
            m1, s1 = first_stats
        else:
            tpl, labels = subject_templates(templates, template_subject)
            m1 = np.full(s_count, np.nan)
            s1 = np.full(s_count, np.nan)
            m1[labels], s1[labels] = cohort_stats(tpl, self.prior, self.k)
        t2, l2 = subject_templates(st[ok], np.asarray(template_subject)[ok])
        t2 = t2 / np.linalg.norm(t2, axis=1, keepdims=True).clip(1e-12)
        mean2, std2 = cohort_stats(t2, self.second_prior, self.second_k)
        m2 = np.full(s_count, np.nan)
        s2 = np.full(s_count, np.nan)
        m2[l2], s2[l2] = mean2, std2
        feats = np.full((s_count, st.shape[1]), np.nan, np.float32)
        feats[l2] = t2
        zf = np.array([self.z_threshold(b, n, target) for b in range(len(self.bands))])
        return SecondScoring(self, self.second_weight, m1, s1, m2, s2, feats, zf)

    def reason(self, n: int, target: float) -> str:
        z = ", ".join(f"{b.name} {self.z_threshold(i, n, target):+.2f}" for i, b in enumerate(self.bands))
        text = (f"scoring model {self.version}: Z-normed distance against each subject's {self.k} nearest other "
                f"subjects, threshold per probe quality band calibrated on degraded LFW dev probes so that a face "
                f"that is not on a {n}-subject watchlist alerts with probability <= {target * 100:.3g}% in every band "
                f"(Z thresholds {z}); faces below band {self.bands[-1].name} are not searched")
        f = self.fused
        if f is not None:
            zf = ", ".join(f"{b.name} {f.z_threshold(i, n, target):+.2f}" for i, b in enumerate(f.bands))
            text += (f"; where the probe and the subject both have {f.second_name.upper()}'s feature (a second, independent "
                     f"model), the score is fused: {1 - f.second_weight:g} x dlib's Z + {f.second_weight:g} x "
                     f"{f.second_name.upper()}'s Z, calibrated the same way (fused Z thresholds {zf})")
        return text

    def evidence(self, n: int, target: float) -> dict:
        """What a deployment stores: the calibrated model for its watchlist's size and target."""
        zs = {b.name: round(self.z_threshold(i, n, target), 4) for i, b in enumerate(self.bands)}
        typical = self.prior.mean + zs[self.bands[0].name] * self.prior.std
        return {
            "kind": "openlfr scoring model",
            "model_version": self.version,
            "watchlist_size": int(n),
            "target_fpir": float(target),
            "threshold": round(float(typical), 4),
            "threshold_note": "distance threshold of a typical subject in the best band; each subject has its own",
            "z_thresholds": zs,
            "bands": [{"name": b.name, "label": b.label, "min_face_px": b.min_face_px, "min_sharpness": b.min_sharpness,
                       "max_yaw": b.max_yaw, "calibrated_on": b.calibrated_on,
                       "expected": self.expected(i, n, target)} for i, b in enumerate(self.bands)],
            "expected_fpir": float(target),
            **({"second_model": self.fused.second_evidence(n, target)} if self.fused is not None else {}),
            "reason": self.reason(n, target),
        }

    def second_evidence(self, n: int, target: float) -> dict:
        """The fused model's part of a deployment's evidence."""
        return {"name": self.second_name, "weight": self.second_weight,
                "z_thresholds": {b.name: round(self.z_threshold(i, n, target), 4) for i, b in enumerate(self.bands)},
                "expected": {b.name: self.expected(i, n, target) for i, b in enumerate(self.bands)},
                "used": "when the probe and the subject both have its feature (faces found by RetinaFace); "
                        "otherwise dlib's thresholds decide"}


@dataclass
class WatchlistScoring:
    """The model applied to one watchlist: a distance threshold per subject and band."""

    model: ScoringModel
    target: float
    n_subjects: int
    mean: np.ndarray  # (S,) per subject index
    std: np.ndarray
    z: np.ndarray  # (B,) Z threshold per band
    reference_band: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (S,) worst band of the references

    second: "SecondScoring | None" = None  # the fusion's statistics, when the watchlist has second templates

    def band_for(self, subject: int, probe_band: int) -> int:
        """The stricter of the probe's band and the subject's reference band."""
        rb = int(self.reference_band[subject]) if subject < len(self.reference_band) else 0
        return max(int(probe_band), rb)

    def decision(self, subject: int, probe_band: int, second_distance: float | None = None) -> "Decision":
        """How a probe of ``probe_band`` is decided against ``subject``: the band used (the stricter
        of the probe's and the subject's reference band), the Z threshold compared and, with the
        probe's second-model distance to the subject (finite, and the subject has a second
        template), the fused model's (see the module); else dlib's own. The one rule behind
        ``threshold`` and the score an alert records."""
        b = self.band_for(subject, probe_band)
        name = self.model.bands[b].name
        f = self.second
        if f is not None and second_distance is not None and np.isfinite(second_distance) and np.isfinite(f.mean2[subject]):
            return f.decision(subject, b, float(second_distance), name)
        return Decision(float(self.z[b]), name, float(self.mean[subject]), float(self.std[subject]))

    def threshold(self, subject: int, probe_band: int, second_distance: float | None = None) -> float:
        """The distance threshold of ``subject`` for a probe of ``probe_band`` (``decision``'s)."""
        return self.decision(subject, probe_band, second_distance).threshold

    @property
    def fused(self) -> bool:
        return self.second is not None

    def second_distances(self, feature: np.ndarray | None, subjects=None) -> np.ndarray | None:
        """Distances of a probe's second-model feature to each subject's (NaN: the subject has none):
        (S,) for every subject, or one per index of ``subjects`` (a search's candidates)."""
        if self.second is None or feature is None:
            return None
        v = np.asarray(feature, np.float32).reshape(-1)
        if not np.isfinite(v).all():
            return None
        v = v / max(float(np.linalg.norm(v)), 1e-12)
        feats = self.second.features if subjects is None else self.second.features[np.asarray(subjects, np.int64)]
        return np.linalg.norm(feats - v[None, :], axis=1)

    def score(self, subject: int, distance: float) -> float:
        return float((distance - self.mean[subject]) / self.std[subject])


@dataclass
class SecondScoring:
    """The fused model applied to one watchlist (per subject index; NaN where a subject has no second template)."""

    model: ScoringModel  # the fused table's model
    weight: float  # the second model's weight in the fused score
    mean1: np.ndarray  # dlib's cohort statistics under the fused model's prior
    std1: np.ndarray
    mean2: np.ndarray  # the second model's
    std2: np.ndarray
    features: np.ndarray  # (S, D2) unit-length subject templates of the second model
    z: np.ndarray  # (B,) fused Z threshold per band

    def decision(self, subject: int, band: int, second_distance: float, band_name: str = "") -> "Decision":
        """The fused decision of a probe at ``second_distance`` from ``subject`` in the second model's space."""
        z2 = float((second_distance - self.mean2[subject]) / self.std2[subject])
        return Decision(float(self.z[band]), band_name or self.model.bands[band].name, float(self.mean1[subject]),
                        float(self.std1[subject]), self.model.second_name, float(self.weight), z2)

    def threshold(self, subject: int, band: int, second_distance: float) -> float:
        """dlib distance below which the fused score is below the band's threshold."""
        return self.decision(subject, band, second_distance).threshold

    def score(self, subject: int, distance: float, second_distance: float) -> float:
        return self.decision(subject, 0, second_distance).score_for(distance)


@dataclass(frozen=True)
class Decision:
    """How one probe is decided against one subject: alert when ``score_for(distance) < z_threshold``,
    which is ``distance < threshold``. ``second_model`` (with its ``weight`` and the probe's Z in its
    space, ``second_z``) when the score is fused; else dlib's Z alone."""

    z_threshold: float  # the band's Z threshold (the fused table's when fused)
    band: str  # the band used: the stricter of the probe's and the subject's reference band
    mean: float  # the subject's dlib cohort statistics (under the fused table's prior when fused)
    std: float
    second_model: str | None = None
    weight: float = 0.0  # the second model's weight in the fused score
    second_z: float = 0.0

    @property
    def fused(self) -> bool:
        return self.second_model is not None

    @property
    def threshold(self) -> float:
        """The dlib distance below which the score is below ``z_threshold``."""
        z1 = (self.z_threshold - self.weight * self.second_z) / (1.0 - self.weight)
        return float(self.mean + z1 * self.std)

    def score_for(self, distance: float) -> float:
        """The score compared with ``z_threshold``: fused, or dlib's Z."""
        z1 = (float(distance) - self.mean) / self.std
        return float((1.0 - self.weight) * z1 + self.weight * self.second_z)


def load_scoring_model(path: str | Path | None = None, fused: str | Path | None = None) -> ScoringModel:
    """The packaged model (with its fused table), or the table at ``path`` (with the fused one at ``fused``)."""
    if path is None:
        return _packaged()
    m = ScoringModel(json.loads(Path(path).read_text()))
    return m.with_fused(ScoringModel(json.loads(Path(fused).read_text()))) if fused is not None else m


@lru_cache(maxsize=1)
def _packaged() -> ScoringModel:
    data = resources.files("openlfr.scoring").joinpath("data")
    m = ScoringModel(json.loads(data.joinpath(TABLE_NAME).read_text()))
    f = data.joinpath(FUSED_TABLE_NAME)
    if f.is_file():
        m.with_fused(ScoringModel(json.loads(f.read_text())))
    return m
