"""Enrolment: reference images to a ``Watchlist``, with quality checks and a report.

Three input layouts:

- a folder of folders ``<subject_id>/<image>``: one subject per folder (name = folder name
  with ``_`` read as a space), every file inside it (recursively) is a candidate image;
- a flat folder of images: each file is one subject (id = file stem; files sharing a stem
  are images of the same subject);
- a CSV file with the header ``subject_id,name,image,category`` (``subject_id`` and ``image``
  are required; ``name`` defaults to the id, ``category`` to "unspecified"; extra columns are
  ignored; image paths are relative to the CSV's folder; a subject may take several rows).

Hidden files (``.name``) are skipped. A file or folder whose name is not valid UTF-8 is reported
(escaped, ``\\xff``) and skipped, since its name could be neither printed nor stored. Each image is checked in turn and the first failure is
its reason for rejection: readable image; at least one face; exactly one face, or one
*dominant* face (its box area at least ``DOMINANCE`` = 2x that of the next largest, as in a
portrait with a small face in the background); face size (box width ≥ ``min_face`` px and
inter-ocular distance ≥ 0.3 x ``min_face``, which also stops strongly turned faces); sharpness
(``Quality.sharpness`` ≥ ``min_sharpness``: the default 0.1 rejects e.g. a 270 px face blurred
with a 5 px Gaussian, while LFW's soft 250x250 JPEGs score 0.12 to 0.8). A subject without any
accepted image is left out and reported.

A watchlist manager may enrol a usable but soft or small reference on purpose
(``accept_low_quality``; the governed commands require a reason and audit it): an image that
fails only the size or sharpness check is then accepted with its quality band
(``openlfr.scoring``) recorded, and the subject's matches are held to the stricter of the
probe's band and that one.

References use flip averaging by default (the chip and its mirror), one template per image.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engine.images import ImageError, load_image
from .model import DIM, Subject, Watchlist, WatchlistError

DOMINANCE = 2.0  # the largest face's box area over the next one's, to accept a group photo
IOD_PER_WIDTH = 0.3  # minimum inter-ocular distance / min_face (a frontal face has ~0.4)
MIN_SHARPNESS = 0.1  # Quality.sharpness = v / (v + 100) of the chip: Laplacian variance v >= 11
CSV_REQUIRED = ("subject_id", "image")
LOW_QUALITY_NOTE = "below the quality gate"


class NoAcceptedImage(WatchlistError):
    """No candidate image passed the checks; ``report`` says why each was rejected (no re-check needed)."""

    def __init__(self, message: str, report: "EnrolmentReport"):
        super().__init__(message)
        self.report = report


@dataclass
class AcceptedImage:
    path: str
    subject_id: str
    quality: float
    box: tuple[int, int, int, int]
    note: str = ""  # e.g. "dominant face of 3"
    low_quality_band: str | None = None  # accepted below the quality gate (override): its band


@dataclass
class EnrolmentReport:
    """What happened to every candidate image. No templates or face crops are kept here."""

    source: str
    accepted: list[AcceptedImage] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    excluded_subjects: list[str] = field(default_factory=list)  # ids left without any image

    @property
    def n_images(self) -> int:
        return len(self.accepted) + len(self.rejected)

    def reason_for(self, path: str | Path) -> str | None:
        for p, r in self.rejected:
            if p == str(path):
                return r
        return None

    def summary(self) -> str:
        lines = [
            f"{self.source}: {len(self.accepted)} of {self.n_images} images accepted; "
            f"{len(self.excluded_subjects)} subject(s) left without an image"
        ]
        lines += [f"  rejected {p}: {r}" for p, r in self.rejected]
        lines += [f"  excluded subject {s}: no accepted image" for s in self.excluded_subjects]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "accepted": [
                {"path": a.path, "subject_id": a.subject_id, "quality": round(a.quality, 4), "box": list(a.box), "note": a.note,
                 "low_quality_band": a.low_quality_band}
                for a in self.accepted
            ],
            "rejected": [{"path": p, "reason": r} for p, r in self.rejected],
            "excluded_subjects": list(self.excluded_subjects),
        }


def display_path(p: Path | str) -> str:
    """A file name as text that can always be printed and stored: bytes that are not UTF-8 are
    shown escaped (``\\xff``) instead of breaking the output or the database."""
    return os.fsencode(p).decode("utf-8", "backslashreplace")


def is_utf8(text: Path | str) -> bool:
    try:
        os.fsencode(text).decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _visible(p: Path | str) -> bool:
    return not Path(p).name.startswith(".")


def _name_of(subject_id: str) -> str:
    return subject_id.replace("_", " ")


def read_folder(path: Path) -> list[Subject]:
    """Subjects (with candidate image paths) from a folder of folders and/or a flat folder."""
    subjects: dict[str, Subject] = {}
    for entry in sorted(filter(_visible, path.iterdir())):
        if entry.is_dir():
            files = sorted(f for f in entry.rglob("*") if f.is_file() and all(_visible(x) for x in f.relative_to(entry).parts))
            s = subjects.setdefault(entry.name, Subject(entry.name, _name_of(entry.name)))
            s.images.extend(str(f) for f in files)
        elif entry.is_file():
            s = subjects.setdefault(entry.stem, Subject(entry.stem, _name_of(entry.stem)))
            s.images.append(str(entry))
    return list(subjects.values())


def read_csv(path: Path) -> list[Subject]:
    """Subjects from a CSV (``subject_id,name,image,category``); malformed rows raise with their line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise WatchlistError(f"{path}: not a UTF-8 text file ({e})") from None
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    if not header or not any(h.strip() for h in header):
        raise WatchlistError(f"{path}: empty CSV, expected the header subject_id,name,image,category")
    cols = [h.strip().lower() for h in header]
    missing = [c for c in CSV_REQUIRED if c not in cols]
    if missing:
        raise WatchlistError(f"{path}, line 1: header lacks column(s) {', '.join(missing)} (found: {', '.join(cols)})")
    at = {c: cols.index(c) for c in ("subject_id", "name", "image", "category") if c in cols}
    subjects: dict[str, Subject] = {}
    for row in rows:
        line = rows.line_num
        if not row or not any(v.strip() for v in row):
            continue
        if len(row) != len(cols):
            raise WatchlistError(f"{path}, line {line}: {len(row)} fields, the header has {len(cols)}")
        get = {c: row[i].strip() for c, i in at.items()}
        sid, image = get["subject_id"], get["image"]
        if not sid or not image:
            raise WatchlistError(f"{path}, line {line}: empty {'subject_id' if not sid else 'image'}")
        name = get.get("name") or _name_of(sid)
        category = get.get("category") or "unspecified"
        s = subjects.get(sid)
        if s is None:
            s = subjects[sid] = Subject(sid, name, category)
        elif (get.get("name") and name != s.name) or (get.get("category") and category != s.category):
            raise WatchlistError(f"{path}, line {line}: subject {sid} has another name or category on an earlier line")
        s.images.append(str(path.parent / image))  # an absolute image path stays as it is
    return list(subjects.values())


def dominant_face(faces: list):
    """(face, note) for the face a reference image is of: the only one, or the *dominant* one (box
    area at least ``DOMINANCE`` x the next largest; note ``dominant face of N``); (None, reason)
    when there is none or none dominates. Used by enrolment and by the governed backfill of the
    second model's templates (``governance.watchlists``), which must pick the same face."""
    if not faces:
        return None, "no face found"
    if len(faces) == 1:
        return faces[0], ""
    area = [(f.box[2] - f.box[0] + 1) * (f.box[3] - f.box[1] + 1) for f in faces]
    order = np.argsort(area)[::-1]
    if area[order[0]] < DOMINANCE * area[order[1]]:
        return None, f"{len(faces)} faces found, none dominant (largest < {DOMINANCE:g}x the next)"
    return faces[order[0]], f"dominant face of {len(area)}"


def check_image(path: str, engine, min_face: int, min_sharpness: float, accept_low_quality: bool = False):
    """(face, note) for an acceptable reference image, else (None, reason). With
    ``accept_low_quality`` a face that fails only the size or sharpness check is accepted, its note
    saying ``below the quality gate: <why>``."""
    try:
        rgb = load_image(path)
    except ImageError as e:
        return None, str(e).removeprefix(f"{path}: ")
    face, note = dominant_face(engine.align(rgb, engine.detect(rgb)))
    if face is None:
        return None, note
    width = face.box[2] - face.box[0] + 1
    iod = face.quality.interocular_px
    why = None
    if width < min_face or iod < IOD_PER_WIDTH * min_face:
        why = f"face too small ({width} px wide, inter-ocular {iod:.0f} px; need {min_face} and {IOD_PER_WIDTH * min_face:.0f})"
    elif face.quality.sharpness < min_sharpness:
        why = f"face too blurred (sharpness {face.quality.sharpness:.2f} < {min_sharpness:.2f})"
    if why is None:
        return face, note
    if accept_low_quality:
        return face, (note + "; " if note else "") + f"{LOW_QUALITY_NOTE}: {why}"
    return None, why


def enrol_subjects(
    subjects: list[Subject],
    engine,
    min_face: int = 40,
    min_sharpness: float = MIN_SHARPNESS,
    flip: bool = True,
    source: str = "",
    accept_low_quality: bool = False,
) -> tuple[Watchlist, EnrolmentReport]:
    """Check every candidate image of ``subjects`` and build the watchlist from the accepted ones."""
    report = EnrolmentReport(source)
    kept: list[Subject] = []
    chips, crops, owner, quality, image, low_band = [], [], [], [], [], []
    for s in subjects:
        accepted = []
        if not (is_utf8(s.id) and is_utf8(s.name)):  # a folder name that is not UTF-8: reported, skipped
            report.rejected += [(display_path(p), "the subject's folder name is not valid UTF-8 (rename it)") for p in s.images]
            report.excluded_subjects.append(display_path(s.id))
            continue
        for path in s.images:
            if not is_utf8(path):
                report.rejected.append((display_path(path), "the file name is not valid UTF-8 (rename the file)"))
                continue
            face, why = check_image(path, engine, min_face, min_sharpness, accept_low_quality)
            if face is None:
                report.rejected.append((path, why))
                continue
            band = None
            if LOW_QUALITY_NOTE in why:
                from ..scoring import load_scoring_model

                m = load_scoring_model()
                b = m.band_of_face(face)
                band = m.band_names()[-1 if b is None else b]
            accepted.append(path)
            report.accepted.append(AcceptedImage(path, s.id, float(face.quality.score), tuple(int(v) for v in face.box), why, band))
            low_band.append(band)
            chips.append(face.chip)
            crops.append(face.second_crop)
            owner.append(len(kept))
            quality.append(face.quality.score)
            image.append(path)
        if accepted:
            kept.append(Subject(s.id, s.name, s.category, accepted))
        else:
            report.excluded_subjects.append(s.id)
    if not kept:
        raise NoAcceptedImage(f"{source or 'watchlist'}: no subject has an accepted image\n{report.summary()}", report)
    templates = engine.descriptor.compute(np.stack(chips), flip=flip, jitter=getattr(engine, "jitter", 0))
    wl = Watchlist(kept, templates.astype(np.float32).reshape(-1, DIM), np.array(owner), np.array(quality), image,
                   second_templates=second_features(getattr(engine, "second_model", None), crops, flip))
    wl.template_low_quality_band = low_band
    return wl, report


def second_features(model, crops: list, flip: bool = True) -> np.ndarray | None:
    """(M, 128) features of the references' crops (``Face.second_crop``; NaN rows where a face has
    none) by the second ``model`` (``engine.sface.SFaceModel``), or None without one or any crop."""
    have = [i for i, c in enumerate(crops) if c is not None]
    if model is None or not have:
        return None
    out = np.full((len(crops), DIM), np.nan, np.float32)
    out[have] = model.compute(np.stack([crops[i] for i in have]), flip=flip)
    return out


def load_watchlist(
    path: str | Path,
    engine,
    min_face: int = 40,
    min_sharpness: float = MIN_SHARPNESS,
    flip: bool = True,
) -> tuple[Watchlist, EnrolmentReport]:
    """Enrol a folder (``<subject>/<image>`` or flat images) or a CSV; see the module docstring.

    ``engine`` is a ``FaceEngine``; its detector decides which faces are found. ``min_face`` is
    the smallest face box width in pixels. Raises ``WatchlistError`` for a missing path, a
    malformed CSV, no subjects, or no accepted image at all.
    """
    p = Path(path)
    if not p.exists():
        raise WatchlistError(f"{p}: no such file or folder")
    if p.is_dir():
        subjects = read_folder(p)
    elif p.suffix.lower() == ".csv":
        subjects = read_csv(p)
    else:
        raise WatchlistError(f"{p}: not a folder or a .csv file")
    if not subjects:
        raise WatchlistError(f"{p}: no subjects found (empty {'folder' if p.is_dir() else 'CSV'})")
    return enrol_subjects(subjects, engine, min_face, min_sharpness, flip, source=str(p))
