"""Watchlist data: subjects and their templates (one 128-D descriptor per accepted image)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DIM = 128


class WatchlistError(ValueError):
    """A watchlist that cannot be built or used (missing path, bad CSV, nothing enrolled)."""


@dataclass
class Subject:
    """A person on the watchlist. ``images`` are the accepted reference images (paths)."""

    id: str
    name: str
    category: str = "unspecified"
    images: list[str] = field(default_factory=list)


@dataclass
class Watchlist:
    """Subjects plus templates; template ``j`` belongs to ``subjects[template_subject[j]]``.

    Several templates per subject are allowed (one per accepted reference image).
    ``template_image[j]`` is the source image of template ``j`` (may be empty when unknown).
    ``second_templates[j]`` is the second model's (SFace's, ``engine/sface.py``) unit feature of
    the same reference face, a row of NaN where it has none (no second model installed, a face
    without RetinaFace's landmarks, a template enrolled before the second model was adopted).
    """

    subjects: list[Subject]
    templates: np.ndarray  # (M, 128) float32
    template_subject: np.ndarray  # (M,) int64 index into subjects
    template_quality: np.ndarray  # (M,) float32, Quality.score of the reference face
    template_image: list[str] = field(default_factory=list)
    template_low_quality_band: list = field(default_factory=list)  # per template: band name if enrolled below the gate
    second_templates: np.ndarray | None = None  # (M, 128) float32, NaN rows: none; None: no template has one

    def __post_init__(self):
        self.templates = np.ascontiguousarray(self.templates, np.float32).reshape(-1, DIM)
        m = len(self.templates)
        if self.second_templates is not None:
            st = np.ascontiguousarray(self.second_templates, np.float32).reshape(-1, DIM)
            if len(st) != m:
                raise WatchlistError(f"second_templates has {len(st)} rows for {m} templates")
            self.second_templates = st if np.isfinite(st).all(axis=1).any() else None
        self.template_subject = np.asarray(self.template_subject, np.int64).reshape(-1)
        self.template_quality = np.asarray(self.template_quality, np.float32).reshape(-1)
        if len(self.template_subject) != m or len(self.template_quality) != m:
            raise WatchlistError(
                f"templates ({m}), template_subject ({len(self.template_subject)}) and "
                f"template_quality ({len(self.template_quality)}) differ in length"
            )
        if self.template_image and len(self.template_image) != m:
            raise WatchlistError(f"template_image has {len(self.template_image)} entries for {m} templates")
        if m and (self.template_subject.min() < 0 or self.template_subject.max() >= len(self.subjects)):
            raise WatchlistError("template_subject refers to a subject that does not exist")
        ids = [s.id for s in self.subjects]
        if len(set(ids)) != len(ids):
            raise WatchlistError("duplicate subject ids")

    def __len__(self) -> int:
        """Number of subjects (not templates)."""
        return len(self.subjects)

    @property
    def n_templates(self) -> int:
        return len(self.templates)

    def subject(self, i: int) -> Subject:
        """The subject with index ``i`` (as used in ``template_subject`` and index labels)."""
        return self.subjects[int(i)]

    def subject_index(self, subject_id: str) -> int:
        for i, s in enumerate(self.subjects):
            if s.id == subject_id:
                return i
        raise KeyError(subject_id)

    @property
    def n_second(self) -> int:
        """Templates that have the second model's feature."""
        return 0 if self.second_templates is None else int(np.isfinite(self.second_templates).all(axis=1).sum())

    def templates_of(self, i: int) -> np.ndarray:
        """(k, 128) templates of subject ``i``."""
        return self.templates[self.template_subject == int(i)]

    def make_index(self, kind: str = "exact"):
        """A search index over all templates, labelled with subject indices."""
        from .index import make_index

        index = make_index(kind, dim=self.templates.shape[1])
        index.add(self.templates, self.template_subject)
        return index
