"""The live pipeline's door: runs of an active deployment, alerts and faces seen."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..live.sink import AlertRecord
from ..store import repository as repo
from ..store.models import (
    Adjudication,
    AlertRow,
    Deployment,
    FacesSeen,
    SnapshotTemplate,
    WorkerDelivery,
)
from .common import _iso
from .errors import DeploymentNotActive, GovernanceError, NotFound
from .roles import Actor

DELIVERY_KEEP_DAYS = 7  # how long a worker delivery's idempotency key is remembered


class LiveRuns:
    """Runs of active deployments. (a part of ``Governance``)"""

    def _running(self, s: Session, deployment_id: int, lock: bool = False) -> Deployment:
        q = select(Deployment).where(Deployment.id == int(deployment_id))
        if lock:
            q = q.with_for_update(read=True)  # a concurrent stop waits for this alert's commit
        d = s.execute(q).scalar_one_or_none()
        if d is None:
            raise NotFound(f"no deployment {deployment_id}")
        if d.status != "active":
            raise DeploymentNotActive(f"deployment {d.id} is {d.status}, not active")
        if self.now() >= d.ends_at:
            raise DeploymentNotActive(f"deployment {d.id} ended at {_iso(d.ends_at)}")
        return d

    def open_run(self, actor: Actor, deployment_id: int):
        """The snapshot, threshold and alert sink of an active deployment (see ``governance.live``)."""
        from .live import DeploymentRun, DeploymentSink, RunSubject

        self.enforce_schedule()
        with self._tx(actor, "deployment.run") as s:
            d = self._running(s, deployment_id)
            snap = repo.live_snapshot(s, d.id)
            if snap is None:
                raise DeploymentNotActive(f"deployment {d.id} has no snapshot")
            rows = s.execute(select(SnapshotTemplate.subject_id, SnapshotTemplate.subject_name, SnapshotTemplate.subject_category,
                                    SnapshotTemplate.vector, SnapshotTemplate.low_quality_band, SnapshotTemplate.second_vector)
                             .where(SnapshotTemplate.snapshot_id == snap.id)
                             .order_by(SnapshotTemplate.subject_id, SnapshotTemplate.id)).all()
            subjects: dict[int, RunSubject] = {}
            for sid, nm, cat, *_ in rows:
                subjects.setdefault(sid, RunSubject(sid, nm, cat))
            templates = np.stack([repo.vector_array(r[3]) for r in rows]) if rows else np.zeros((0, repo.DIM), np.float32)
            self._audit(s, actor, "deployment.run", f"deployment:{d.id}", {"snapshot_id": snap.id, "templates": len(rows)})
            return DeploymentRun(
                deployment_id=d.id, name=d.name, watchlist_templates=templates,
                template_subject_ids=np.array([r[0] for r in rows], np.int64), subjects=list(subjects.values()),
                threshold=d.threshold, cameras=repo.cameras_of(d), starts_at=d.starts_at, ends_at=d.ends_at,
                sink=DeploymentSink(self, actor, d.id),
                threshold_evidence=json.loads(d.threshold_evidence) if d.threshold_evidence else None,
                template_low_quality_band=[r[4] for r in rows],
                second_templates=repo.vector_rows(r[5] for r in rows),
            )

    def is_running(self, deployment_id: int) -> bool:
        with self.db.transaction() as s:
            try:
                self._running(s, deployment_id)
                return True
            except (DeploymentNotActive, NotFound):
                return False

    def record_alert(self, actor: Actor, deployment_id: int, record: AlertRecord, delivery: tuple[str, int] | None = None) -> int:
        """Persist one alert (a ``live.sink.AlertRecord``: a new one, or a better shot of an
        unadjudicated one) and commit before returning its id; ``GovernanceError`` for a bad record.

        A sighting never changes an adjudicated alert: the same (camera, track, subject) after a
        decision, or an ``alert_id`` update of an adjudicated alert, becomes a new alert (the next
        ``sighting``; its entry names the alert it ``follows``). ``delivery``: a worker's
        (idempotency key, token id), stored in the same transaction (exactly once)."""
        from .live import DECISION_FIELDS, alert_fields

        a = alert_fields(record)
        try:
            with self._tx(actor, "alert.record") as s:
                d = self._running(s, deployment_id, lock=True)
                if a["camera"] not in repo.cameras_of(d):
                    raise GovernanceError(f"camera {a['camera']!r} is not one of deployment {d.id}'s cameras")
                snap = repo.live_snapshot(s, d.id)
                if snap is None or s.execute(select(SnapshotTemplate.id).where(
                        SnapshotTemplate.snapshot_id == snap.id, SnapshotTemplate.subject_id == a["subject_id"]).limit(1)).first() is None:
                    raise GovernanceError(f"subject {a['subject_id']} is not in deployment {d.id}'s snapshot (erased?)")
                now = self.now()
                row = None
                if a["alert_id"] is not None:
                    row = s.get(AlertRow, a["alert_id"])
                    if row is None or row.deployment_id != d.id:
                        raise NotFound(f"no alert {a['alert_id']} in deployment {d.id}")
                    if self._adjudicated(s, row.id):
                        row = None  # decided: the sighting goes to its own alert (below)
                if row is None:
                    row = s.execute(select(AlertRow).where(
                        AlertRow.deployment_id == d.id, AlertRow.camera == a["camera"], AlertRow.track == a["track"],
                        AlertRow.subject_id == a["subject_id"]).order_by(AlertRow.sighting.desc()).limit(1)).scalar_one_or_none()
                follows = None
                if row is not None and self._adjudicated(s, row.id):
                    follows, sighting, row = row.id, row.sighting + 1, None
                elif row is None:
                    sighting = 0
                if row is None:
                    row = AlertRow(deployment_id=d.id, camera=a["camera"], track=a["track"], subject_id=a["subject_id"],
                                   distance=a["distance"], distances=json.dumps(a["distances"]), frame=a["frame"],
                                   media_time=a["media_time"], occurred_at=a["occurred_at"] or now, recorded_at=now,
                                   updated_at=now, updates=0, probe_crop=a["crop"], template=a["template"], sighting=sighting,
                                   **{k: a[k] for k in DECISION_FIELDS})
                    s.add(row)
                    s.flush()
                    action = "alert.create"
                else:
                    row.updates += 1
                    row.updated_at = now
                    if a["distance"] < row.distance:  # a better shot replaces crop and template
                        row.distance, row.distances, row.probe_crop, row.template = (
                            a["distance"], json.dumps(a["distances"]), a["crop"], a["template"])
                        row.frame, row.media_time = a["frame"], a["media_time"]
                        for k in DECISION_FIELDS:  # and how it was decided (NULL: not said, an older camera worker)
                            setattr(row, k, a[k])
                    action = "alert.update"
                details = {"deployment_id": d.id, "camera": a["camera"], "track": a["track"], "subject_id": a["subject_id"],
                           "distance": round(a["distance"], 6)}
                # how it was decided, where said (the transparency report counts the alerts decided with a fused score)
                details |= {k: round(a[k], 6) if isinstance(a[k], float) else a[k] for k in DECISION_FIELDS if a[k] is not None}
                if follows is not None:
                    details["follows"] = follows
                self._audit(s, actor, action, f"alert:{row.id}", details)
                if delivery is not None:
                    self._delivered(s, delivery, row.id)
                return row.id
        except DeploymentNotActive:
            self.enforce_schedule()
            raise

    @staticmethod
    def _adjudicated(s: Session, alert_id: int) -> bool:
        return s.execute(select(Adjudication.id).where(Adjudication.alert_id == alert_id).limit(1)).first() is not None

    def _delivered(self, s: Session, delivery: tuple[str, int], alert_id: int | None) -> None:
        key, token_id = delivery
        s.add(WorkerDelivery(key=key, token_id=token_id, alert_id=alert_id, received_at=self.now()))
        s.flush()

    def delivery(self, key: str, token_id: int) -> tuple[bool, int | None]:
        """Whether a worker's delivery (an alert or a faces-seen count, by its idempotency key) was
        already recorded, and the alert id it made. A key used by another worker is refused."""
        with self.db.transaction() as s:
            row = s.get(WorkerDelivery, key)
            if row is None:
                return False, None
            if row.token_id != token_id:
                raise GovernanceError("this idempotency key was used by another worker")
            return True, row.alert_id

    def forget_deliveries(self, keep_days: int = DELIVERY_KEEP_DAYS) -> None:
        """Forget idempotency keys older than ``keep_days`` (a worker's buffer is older than that only if lost)."""
        with self.db.transaction() as s:
            s.execute(delete(WorkerDelivery).where(WorkerDelivery.received_at < self.now() - timedelta(days=keep_days)))

    def count_faces_seen(self, actor: Actor, deployment_id: int, camera: str, n: int = 1,
                         delivery: tuple[str, int] | None = None, too_poor: int = 0) -> int:
        """Add ``n`` faces seen (tracks) to a deployment's camera, ``too_poor`` of them too poor to search
        (below the lowest quality band); returns the camera's new total.

        Each count is an audit entry with the running total (the published false alert rate's
        denominator is covered by the chain). ``delivery``: as in ``record_alert``."""
        if n < 0 or too_poor < 0:
            raise GovernanceError("faces seen only grow")
        with self._tx(actor, "alert.record") as s:
            d = self._running(s, deployment_id, lock=True)
            camera = str(camera)
            if camera not in repo.cameras_of(d):
                raise GovernanceError(f"camera {camera!r} is not one of deployment {d.id}'s cameras")
            if s.bind.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            stmt = insert(FacesSeen).values(deployment_id=d.id, camera=camera, count=int(n), too_poor=int(too_poor))
            s.execute(stmt.on_conflict_do_update(index_elements=["deployment_id", "camera"],
                                                 set_={"count": FacesSeen.count + stmt.excluded.count,
                                                       "too_poor": FacesSeen.too_poor + stmt.excluded.too_poor}))
            total = int(s.execute(select(FacesSeen.count).where(FacesSeen.deployment_id == d.id, FacesSeen.camera == camera)).scalar_one())
            self._audit(s, actor, "faces_seen.count", f"deployment:{d.id}", {"deployment_id": d.id, "camera": camera, "n": int(n),
                                                                             "total": total, "too_poor": int(too_poor)})
            if delivery is not None:
                self._delivered(s, delivery, None)
            return total

    def faces_seen(self, actor: Actor, deployment_id: int) -> dict[str, int]:
        with self._tx(actor, "deployment.read") as s:
            return {c: n for c, n in s.execute(select(FacesSeen.camera, FacesSeen.count).where(FacesSeen.deployment_id == int(deployment_id)))}
