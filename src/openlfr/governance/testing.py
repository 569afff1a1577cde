"""A small governed world for tests: one user per role, a watchlist, subjects, a deployment.

Templates here are random unit vectors (no face engine needed); images are tiny JPEG stand-ins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from ..live.sink import AlertRecord
from .clock import TestClock
from .roles import ROLES, Actor
from .service import Governance, NewImage

PASSWORD = "correct horse battery"
def _tiny_jpeg() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 130, 140)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


FAKE_JPEG = _tiny_jpeg()  # a real (8x8, face-less) JPEG: stored images are decoded when served


def template(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


def alert_record(subject_id: int, track: int | str = 1, camera: str = "cam-a", distance: float = 0.4, **fields) -> AlertRecord:
    """A test alert: a tiny JPEG crop, template ``template(1000 + track)``, frame ``10 * track``,
    media time ``1.5 * track`` (all replaced by ``fields``)."""
    n = int(track) if str(track).isdigit() else 0
    base = dict(crop=FAKE_JPEG, template=template(1000 + n), distances=(distance,), frame=10 * n, media_time=1.5 * n)
    return AlertRecord(camera=camera, track=track, subject_id=subject_id, distance=distance, **{**base, **fields})


def image(seed: int, source: str = "custody record") -> NewImage:
    return NewImage(data=FAKE_JPEG + seed.to_bytes(4, "little"), template=template(seed), quality=0.9, source=source,
                    taken_at=datetime(2029, 6, 1))


@dataclass
class World:
    gov: Governance
    clock: TestClock
    actors: dict[str, Actor]
    watchlist: str = "wanted"
    subjects: list[int] = field(default_factory=list)

    def __getitem__(self, role: str) -> Actor:
        return self.actors[role]

    def enrol(self, ref: str, seed: int, days: float = 30, n_images: int = 1, name: str | None = None, category: str = "wanted_by_courts",
              volunteer: bool = False) -> int:
        s = self.gov.enrol_subject(
            self["watchlist_manager"], self.watchlist, ref, name or f"Person {ref}", "volunteer" if volunteer else category,
            "test deployment volunteer (consent recorded)" if volunteer else "warrant issued",
            self.clock.now() + timedelta(days=days), [image(seed * 100 + k) for k in range(n_images)], volunteer=volunteer,
        )
        if s.id not in self.subjects:
            self.subjects.append(s.id)
        return s.id

    def plan(self, start_in: timedelta = timedelta(hours=1), length: timedelta = timedelta(hours=4), cameras=("cam-a", "cam-b"), **kw) -> int:
        now = self.clock.now()
        args = dict(name="High Street", use_case="wanted persons", location="High Street, Cardiff", zone="north entrance",
                    starts_at=now + start_in, ends_at=now + start_in + length, cameras=list(cameras), threshold=0.6,
                    threshold_reason="test world: a fixed distance",
                    watchlist=self.watchlist, signage_confirmed=True, notices_confirmed=True, dpia_ref="DPIA-2030-01")
        args.update(kw)
        return self.gov.plan_deployment(self["operator"], **args).id

    def active_deployment(self, **kw) -> int:
        """Plan, authorise and start a deployment (the clock moves to its start)."""
        d = self.plan(**kw)
        self.gov.authorise_deployment(self["authorising_officer"], d)
        dep = self.gov.get_deployment(self["auditor"], d)
        self.clock.set(datetime.fromisoformat(dep["starts_at"]))
        self.gov.start_deployment(self["operator"], d)
        return d

    def alert(self, deployment_id: int, subject_id: int, track: int = 1, camera: str = "cam-a", distance: float = 0.4, actor: Actor | None = None) -> int:
        run_actor = actor or Actor.system("live")
        return self.gov.record_alert(run_actor, deployment_id, alert_record(subject_id, track, camera, distance))


def make_world(db_url: str, clock: TestClock | None = None, subjects: int = 2) -> World:
    """A database with one user per role (named after the role), a watchlist and ``subjects`` subjects."""
    clock = clock or TestClock()
    gov = Governance(db_url, clock)
    gov.bootstrap_admin("administrator", PASSWORD)
    admin = gov.login("administrator", PASSWORD)
    actors = {"administrator": admin}
    for role in ROLES:
        if role != "administrator":
            gov.create_user(admin, role, [role], PASSWORD)
            actors[role] = gov.login(role, PASSWORD)
    w = World(gov, clock, actors)
    gov.create_watchlist(w["watchlist_manager"], w.watchlist, "test watchlist")
    for i in range(subjects):
        w.enrol(f"S{i + 1}", seed=i + 1)
    return w
