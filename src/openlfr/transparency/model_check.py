"""The packaged scoring model checked on one's own identity folders (``openlfr calibrate --scoring-model``).

Why: a deployment decides with the scoring model (``openlfr.scoring``: Z-normed distance, a
threshold per probe quality band and watchlist size, fused with SFace where it runs), whose
thresholds were calibrated on degraded LFW dev probes. Calibrating a raw distance on local data
(plain ``openlfr calibrate``) gives a deployment that decides differently from the model every
other part of the product describes. This check keeps the one model and asks the local data
whether its thresholds hold there: the FPIR they reach on faces like the deployment's, with an
interval, against the target.

Method (``DIR/<identity>/<image>``, images sorted by name; ``--same-person`` pairs merged into
one identity, the first of the pair keeping its reference):

- **references**: each identity's first readable image, embedded as enrolment does (dlib's
  descriptor averaged with the mirrored chip; SFace's feature likewise when the packaged model
  fuses SFace and SFace is installed here); **probes**: every image, as a live probe is (plain);
- each probe is put in its quality band (``face_qualities`` + ``ScoringModel.band_of``: face
  width, sharpness, yaw); a probe below the last band is not searched, and counted;
- **galleries** of ``watchlist_size`` identities drawn at random (``replicates`` of them, seeded;
  the same galleries for every band), their cohort statistics computed as a live run computes
  them (the model's prior and cohort size), and every searched probe of every identity outside
  the gallery searched against it (``scoring.calibration.simulate``, with the fusion when fused);
- **FPIR** at the packaged thresholds (``z_threshold(band, N, target)``, the fused table's when
  fused), per band and pooled, with the interval of ``fpir_at`` (resampling identities, as
  strangers and as enrolled subjects; at least Wilson's); **FNIR** of the gallery identities'
  other images at the same thresholds (a miss: the right subject is not the nearest, or not below
  its threshold), with a 95% Wilson interval counting each mated probe once;
- **verdict**: ``holds`` when the pooled FPIR's 95% interval contains the target or lies below
  it, ``exceeds`` when its lower bound is above the target (the data says the packaged
  thresholds give more false alerts here than planned);
- for reference, the band-free threshold this data alone would give (``threshold_at`` on the
  pooled searches' scores), beside the packaged band A threshold.

Everything is seeded; the same data and options give the same figures.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .calibrate import MIN_OUTSIDE_IDENTITIES, CalibrationError

KIND = "openlfr scoring model check"


@dataclass
class CheckData:
    """Local identity folders embedded for the check: references and probes by quality band."""

    root: str
    identities: list[str]
    refs: np.ndarray  # (I, 128) flip-averaged dlib descriptors
    probes: np.ndarray  # (P, 128) plain dlib descriptors
    probe_identity: np.ndarray  # (P,)
    probe_is_ref: np.ndarray  # (P,) bool
    probe_band: np.ndarray  # (P,) band index; -1: too poor to search
    second_refs: np.ndarray | None = None  # (I, 128) SFace, unit length
    second_probes: np.ndarray | None = None  # (P, 128)
    second: str | None = None  # the second model used ("sface"), or None
    second_note: str = ""
    unreadable: int = 0
    merged: list[list[str]] = field(default_factory=list)
    method: str = ""
    embed_seconds: float = 0.0

    def calibration_data(self, model):
        """``scoring.calibration.CalibrationData`` with one probe set per band that has probes."""
        from ..scoring.calibration import CalibrationData, ProbeSet

        probes = {}
        for b, band in enumerate(model.bands):
            k = self.probe_band == b
            if k.any():
                probes[band.name] = ProbeSet(self.probes[k], self.probe_identity[k], self.probe_is_ref[k],
                                             None if self.second_probes is None else self.second_probes[k])
        return CalibrationData(self.refs, probes, self.second_refs)


def _need(n: int) -> int:
    return n + MIN_OUTSIDE_IDENTITIES


def _too_few(n: int, have: int, root) -> CalibrationError:
    return CalibrationError(
        f"checking the scoring model for a {n}-subject watchlist needs at least {_need(n)} identities ({n} in each "
        f"simulated gallery and {MIN_OUTSIDE_IDENTITIES} left out as strangers); {root} holds {have}")


def gather(images: str | Path, *, model=None, second_model: str = "auto", progress: bool = False,
           use_cache: bool = True, same_person: list[tuple[str, str]] | None = None,
           min_identities: int = 0) -> CheckData:
    """Embed identity folders as the check needs them (see the module). ``second_model``: ``"auto"``
    (SFace when the model fuses it and it is installed) or ``"none"``."""
    from ..engine import sface
    from ..evaluate.embedding import EmbedOptions, embed_images, face_qualities
    from ..evaluate.identify import scan_identities
    from ..evaluate.lfw_errata import merge_same_person
    from ..scoring import load_scoring_model

    m = model or load_scoring_model()
    root = Path(images)
    found, merged = merge_same_person(scan_identities(root), same_person or [])
    found = {n: [Path(p) for p in ps] for n, ps in found.items() if ps}
    if min_identities and len(found) < min_identities:
        raise _too_few(min_identities - MIN_OUTSIDE_IDENTITIES, len(found), root)
    t0 = time.perf_counter()
    popts = EmbedOptions(flip=m.probe_flip)
    paths = [p for ps in found.values() for p in ps]
    plain = embed_images(paths, popts, progress=progress, use_cache=use_cache)
    at = plain.index()
    firsts = {n: next((p for p in ps if p in at), None) for n, ps in found.items()}
    firsts = {n: p for n, p in firsts.items() if p is not None}
    flip = embed_images(list(firsts.values()), EmbedOptions(flip=True), progress=progress, use_cache=use_cache)
    fat = flip.index()
    second, note = None, ""
    at2 = fat2 = plain2 = flip2 = None
    if m.fused is None:
        note = "the packaged scoring model fuses no second model: dlib's thresholds checked"
    elif second_model == "none":
        note = f"{m.fused.second_name.upper()} left out (second model none): dlib's own thresholds checked"
    elif sface.load_second_model("auto") is None:
        note = (f"{m.fused.second_name.upper()} is not installed here: dlib's own thresholds checked (a live run here "
                "decides with them too)")
    else:
        from ..evaluate.second import sface_features

        second = m.fused.second_name
        plain2 = sface_features([p for p in paths if p in at], flip=False, progress=progress, use_cache=use_cache)
        flip2 = sface_features([p for p in firsts.values() if p in fat], flip=True, progress=progress, use_cache=use_cache)
        at2, fat2 = plain2.index(), flip2.index()
        note = (f"fused with {second.upper()} (weight {m.fused.second_weight:g}), as a live run with RetinaFace decides: "
                "the fused table's thresholds checked")
    kept = [n for n, p in firsts.items() if p in fat and (fat2 is None or p in fat2)]
    index = {n: i for i, n in enumerate(kept)}
    rows = [(index[n], p, p == firsts[n]) for n in kept for p in found[n] if p in at and (at2 is None or p in at2)]
    probe_paths = [p for _, p, _ in rows]
    quality = face_qualities(probe_paths, popts)
    band_of = [None if quality.get(p) is None else m.band_of(*quality[p]) for p in probe_paths]
    bands = np.array([-1 if b is None else b for b in band_of], np.int64)

    def unit(x):
        x = np.asarray(x, np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)

    d = CheckData(
        root=str(root), identities=kept,
        refs=flip.descriptors[[fat[firsts[n]] for n in kept]].astype(np.float32) if kept else np.zeros((0, 128), np.float32),
        probes=plain.descriptors[[at[p] for p in probe_paths]].astype(np.float32) if rows else np.zeros((0, 128), np.float32),
        probe_identity=np.array([r[0] for r in rows], np.int64), probe_is_ref=np.array([r[2] for r in rows], bool),
        probe_band=bands, second=second, second_note=note, unreadable=len(plain.errors), merged=merged,
        method=("references: first image of each identity, " + EmbedOptions(flip=True).describe()
                + (f", and {second.upper()}'s feature flip-averaged" if second else "")
                + "; probes: every image, " + popts.describe() + (f", and {second.upper()}'s feature" if second else "")
                + "; each probe in its quality band"),
    )
    if second:
        d.second_refs = unit(flip2.descriptors[[fat2[firsts[n]] for n in kept]])
        d.second_probes = unit(plain2.descriptors[[at2[p] for p in probe_paths]])
    d.embed_seconds = round(time.perf_counter() - t0, 1)
    return d


def _rate(k: float, n: int) -> float | None:
    return None if n == 0 else k / n


def _verdict(ci: list[float] | None, target: float) -> str | None:
    if ci is None:
        return None
    return "exceeds" if ci[0] > target else "holds"


def check(data: CheckData, watchlist_size: int, target_fpir: float, *, replicates: int = 50, seed: int = 0,
          model=None) -> dict:
    """The check's summary (JSON-ready; see the module)."""
    from ..scoring import ScoringError, load_scoring_model
    from ..scoring.calibration import Fusion, fpir_at, simulate, threshold_at, wilson
    from .calibrate import distances

    m = model or load_scoring_model()
    n, target = int(watchlist_size), float(target_fpir)
    if n < 1:
        raise CalibrationError("the watchlist size must be at least 1")
    use = m.fused if data.second else m
    try:
        use.check_target(target)
    except ScoringError as e:
        raise CalibrationError(str(e)) from None
    if len(data.identities) < _need(n):
        raise _too_few(n, len(data.identities), data.root)
    cd = data.calibration_data(m)
    fusion = Fusion(use.second_prior, use.second_weight) if data.second else None
    d_refs = distances(data.refs, data.refs)
    d_refs2 = distances(data.second_refs, data.second_refs) if data.second else None
    bands, pooled = {}, {"margin": [], "who": [], "near": [], "best": [], "miss": 0, "mated": 0, "distinct": 0}
    for b, band in enumerate(m.bands):
        z = use.z_threshold(b, n, target)
        probes = int((data.probe_band == b).sum())
        row = {"label": band.label, "z_threshold": round(z, 4), "probes": probes, "searches": 0, "false_alerts": 0,
               "fpir": None, "fpir_ci95": None, "mated_searches": 0, "mated_probes": 0, "fnir": None, "fnir_ci95": None,
               "verdict": None}
        bands[band.name] = row
        if band.name not in cd.probes:
            continue
        r = simulate(cd, band.name, n, target, use.prior, k=use.k, seed=seed, replicates=replicates, d_refs=d_refs,
                     keep_best=True, fusion=fusion, d_refs2=d_refs2)["raw"]
        margin = r["best"] - z
        fp = fpir_at(margin, 0.0, r["probe_identity"], r["nearest_identity"], seed)
        miss = ~(r["mated_hit"] & (r["mated_best"] < z))
        distinct = int(np.unique(r["mated_probe"]).size)
        fn = _rate(float(miss.sum()), int(miss.size))
        row.update({"searches": fp["trials"], "false_alerts": fp["false_alerts"], "fpir": round(fp["fpir"], 6),
                    "fpir_ci95": [round(x, 6) for x in fp["fpir_ci95"]], "mated_searches": int(miss.size),
                    "mated_probes": distinct, "fnir": None if fn is None else round(fn, 5),
                    "fnir_ci95": None if fn is None else [round(x, 5) for x in wilson(fn * distinct, distinct)],
                    "verdict": _verdict(fp["fpir_ci95"], target) if fp["trials"] else None})
        for key, v in (("margin", margin), ("who", r["probe_identity"]), ("near", r["nearest_identity"]), ("best", r["best"])):
            pooled[key].append(v)
        pooled["miss"] += int(miss.sum())
        pooled["mated"] += int(miss.size)
        pooled["distinct"] += distinct
    if not pooled["margin"]:
        raise CalibrationError("no probe of the folders is good enough to search (every face below the last quality band)")
    margin = np.concatenate(pooled["margin"])
    fp = fpir_at(margin, 0.0, np.concatenate(pooled["who"]), np.concatenate(pooled["near"]), seed)
    fn = _rate(pooled["miss"], pooled["mated"])
    verdict = _verdict(fp["fpir_ci95"], target)
    all_best = np.concatenate(pooled["best"])
    t_data = threshold_at(all_best, target)
    notes = []
    if fp["trials"] * target < 10:
        notes.append(f"{fp['trials']:,} searches are too few to resolve an FPIR of {target:g} (at least "
                     f"{math.ceil(10 / target):,} are needed): the interval is wide and the check weak; more identities "
                     "or more --replicates would firm it up")
    too_poor = int((data.probe_band < 0).sum())
    summary = {
        "kind": KIND,
        "version": 1,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "images": data.root,
        "method": data.method,
        "model_version": m.version,
        "scores": "fused" if data.second else "dlib",
        "second_model": data.second,
        "second_model_note": data.second_note,
        "identities": len(data.identities),
        "images_used": int(len(data.probe_band)),
        "unreadable": data.unreadable,
        "same_person_merged": data.merged,
        "watchlist_size": n,
        "target_fpir": target,
        "replicates": int(replicates),
        "seed": int(seed),
        "too_poor_to_search": too_poor,
        "bands": bands,
        "pooled": {"probes": int(len(data.probe_band)) - too_poor, "searches": fp["trials"], "false_alerts": fp["false_alerts"],
                   "fpir": round(fp["fpir"], 6), "fpir_ci95": [round(x, 6) for x in fp["fpir_ci95"]],
                   "mated_searches": pooled["mated"], "mated_probes": pooled["distinct"],
                   "fnir": None if fn is None else round(fn, 5),
                   "fnir_ci95": None if fn is None else [round(x, 5) for x in wilson(fn * pooled["distinct"], pooled["distinct"])]},
        "data_threshold": {
            "z": None if not math.isfinite(t_data) else round(t_data, 4),
            "packaged_band_a_z": round(use.z_threshold(0, n, target), 4),
            "note": "the band-free Z threshold at which this data alone reaches the target (all searched probes pooled); "
                    "for reference only: the packaged thresholds decide"},
        "verdict": verdict,
        "notes": notes,
        "embed_seconds": data.embed_seconds,
    }
    summary["summary"] = explain(summary)
    summary["line"] = check_line(summary)
    return summary


def check_scoring_model(images: str | Path, watchlist_size: int, target_fpir: float, *, replicates: int = 50,
                        seed: int = 0, progress: bool = False, use_cache: bool = True,
                        same_person: list[tuple[str, str]] | None = None, second_model: str = "auto") -> dict:
    """Check the packaged scoring model on identity folders (see the module)."""
    from ..scoring import ScoringError, load_scoring_model

    m = load_scoring_model()
    if watchlist_size < 1:
        raise CalibrationError("the watchlist size must be at least 1")
    try:  # cheap refusals before any embedding
        (m.fused or m).check_target(float(target_fpir))
        m.check_target(float(target_fpir))
    except ScoringError as e:
        raise CalibrationError(str(e)) from None
    data = gather(images, model=m, second_model=second_model, progress=progress, use_cache=use_cache,
                  same_person=same_person, min_identities=_need(int(watchlist_size)))
    return check(data, watchlist_size, target_fpir, replicates=replicates, seed=seed, model=m)


# --------------------------------------------------------------------------- words


def _ci(ci) -> str:
    from .rates import pct

    return "-" if ci is None else f"{pct(ci[0], 3)} to {pct(ci[1], 3)}"


def explain(s: dict) -> str:
    """What the check found, in a few sentences (console, evidence)."""
    from .rates import pct

    p, t = s["pooled"], s["target_fpir"]
    lo, hi = p["fpir_ci95"]
    where = ("its 95% interval lies below the target" if hi < t else "its 95% interval contains the target")
    head = (f"on {s['identities']} identities ({s['images_used']} images) of {s['images']}, {p['false_alerts']} of "
            f"{p['searches']:,} searches of faces not on a {s['watchlist_size']}-subject watchlist alerted at the packaged "
            f"thresholds: FPIR {pct(p['fpir'], 3)} (95% interval {pct(lo, 3)} to {pct(hi, 3)}, resampling identities)")
    if s["verdict"] == "exceeds":
        text = (f"exceeds: {head}; its lower bound is above the target {pct(t, 3)}, so on faces like these the scoring "
                "model gives more false alerts than planned (check the data for label errors, one person under two "
                "names, with --same-person; otherwise plan a lower target FPIR or a smaller watchlist)")
    else:
        text = f"holds: {head}; {where} {pct(t, 3)}"
    if p["fnir"] is not None:
        text += (f". FNIR there {pct(p['fnir'], 3)} ({_ci(p['fnir_ci95'])}, {p['mated_probes']} mated probes)")
    return text + "."


def check_line(s: dict) -> str:
    """One line for the evidence, the report and the authorisation page."""
    from .rates import pct

    p = s["pooled"]
    return (f"checked on local data ({s['identities']} identities, {p['searches']:,} searches, "
            f"{'fused with ' + s['second_model'].upper() if s['second_model'] else 'dlib alone'}): FPIR {pct(p['fpir'], 3)} "
            f"({_ci(p['fpir_ci95'])}) at the packaged thresholds against the target {pct(s['target_fpir'], 3)}: "
            f"{s['verdict']}" + (f"; FNIR {pct(p['fnir'], 3)} ({_ci(p['fnir_ci95'])})" if p["fnir"] is not None else ""))


def describe(s: dict) -> list[str]:
    """The check as plain lines (console)."""
    from .rates import pct

    lines = [
        f"scoring model {s['model_version']} checked for a {s['watchlist_size']}-subject watchlist at FPIR {s['target_fpir']:g} "
        f"({s['replicates']} galleries, seed {s['seed']})",
        f"data: {s['identities']} identities, {s['images_used']} images"
        + (f", {s['unreadable']} unreadable" if s["unreadable"] else "")
        + (f"; merged as one person: {', '.join('/'.join(x) for x in s['same_person_merged'])}" if s["same_person_merged"] else ""),
        f"scores: {s['second_model_note']}",
        "per quality band (probes; FPIR of faces not on the watchlist, 95% interval; FNIR of watchlisted faces, 95% interval):",
    ]
    for name, b in s["bands"].items():
        if not b["searches"]:
            lines.append(f"  band {name}: {b['probes']} probes, not measured (none searched against a gallery)")
            continue
        lines.append(f"  band {name}: {b['probes']} probes, Z < {b['z_threshold']:+.2f}: FPIR {pct(b['fpir'], 3)} "
                     f"({_ci(b['fpir_ci95'])}; {b['false_alerts']} of {b['searches']:,}), FNIR {pct(b['fnir'], 3)} "
                     f"({_ci(b['fnir_ci95'])}; {b['mated_probes']} mated probes): {b['verdict']}")
    p = s["pooled"]
    lines.append(f"  too poor to search: {s['too_poor_to_search']} probes")
    lines.append(f"  all bands: {p['probes']} probes: FPIR {pct(p['fpir'], 3)} ({_ci(p['fpir_ci95'])}; {p['false_alerts']} of "
                 f"{p['searches']:,}), FNIR {pct(p['fnir'], 3)} ({_ci(p['fnir_ci95'])})")
    dt = s["data_threshold"]
    lines.append(f"this data alone would set Z {dt['z']:+.2f} (all bands pooled) against the packaged band A Z "
                 f"{dt['packaged_band_a_z']:+.2f}" if dt["z"] is not None else "this data alone sets no threshold")
    lines.append(f"verdict: {s['summary']}")
    for note in s["notes"]:
        lines.append(f"note: {note}")
    return lines


def evidence_with_check(s: dict) -> dict:
    """What ``--store-for`` stores: the packaged model's evidence for the check's size and target
    (what ``deployment plan`` without ``--threshold`` stores), with the check beside it."""
    from ..scoring import load_scoring_model

    ev = load_scoring_model().evidence(int(s["watchlist_size"]), float(s["target_fpir"]))
    ev["chosen_by"] = "openlfr calibrate --scoring-model: the packaged scoring model, checked on local data"
    ev["local_check"] = s
    ev["local_check_line"] = s["line"]
    return ev
