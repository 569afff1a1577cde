"""Deployments: plan, authorise, start, stop, the schedule and the frozen snapshot."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..store import repository as repo
from ..store.models import (
    Adjudication,
    AlertRow,
    Authorisation,
    Deployment,
    Engagement,
    FacesSeen,
    Snapshot,
    SnapshotTemplate,
    SubjectRow,
    Template,
    VolunteerPass,
    WatchlistRow,
)
from ..store.types import utc
from .common import _iso
from .errors import GovernanceError, NotFound
from .roles import Actor


class DeploymentAdmin:
    """Deployments and their snapshots. (a part of ``Governance``)"""

    def plan_deployment(
        self,
        actor: Actor,
        *,
        name: str,
        use_case: str,
        location: str,
        zone: str,
        starts_at: datetime,
        ends_at: datetime,
        cameras: Sequence[str],
        threshold: float | None = None,
        watchlist: int | str,
        signage_confirmed: bool = False,
        notices_confirmed: bool = False,
        dpia_ref: str = "",
        authorising_officer: str | None = None,
        threshold_reason: str = "",
        target_fpir: float = 0.001,
    ) -> Deployment:
        """Without ``threshold`` the calibrated scoring model for the watchlist's size and
        ``target_fpir`` is stored; a manual threshold needs ``threshold_reason`` (``thresholds.py``)."""
        from .thresholds import plan_evidence

        starts_at, ends_at = utc(starts_at), utc(ends_at)
        cams = [str(c) for c in cameras]
        if not name or not use_case or not location or not zone:
            raise GovernanceError("a deployment needs a name, a use case, a location and a zone of recognition")
        if ends_at <= starts_at:
            raise GovernanceError("the end must be after the start")
        if not cams or len(set(cams)) != len(cams) or any(not c for c in cams):
            raise GovernanceError("a deployment needs one or more cameras, each named once")
        if threshold is not None and not (0.0 < float(threshold) < 2.0):
            raise GovernanceError("the threshold is a descriptor distance in (0, 2)")
        with self._tx(actor, "deployment.plan") as s:
            if ends_at <= self.now():
                raise GovernanceError("the deployment would end in the past")
            w = self._watchlist(s, watchlist)
            threshold, evidence = plan_evidence(repo.count(s, SubjectRow, SubjectRow.watchlist_id == w.id, SubjectRow.expires_at > self.now()), threshold, threshold_reason, target_fpir)
            officer_id = None
            if authorising_officer:
                officer = self._user(s, authorising_officer)
                if "authorising_officer" not in repo.roles_of(s, officer.id):
                    raise GovernanceError(f"{authorising_officer} is not an authorising officer")
                officer_id = officer.id
            d = Deployment(
                name=name, use_case=use_case, location=location, zone=zone, starts_at=starts_at, ends_at=ends_at,
                cameras=json.dumps(cams), threshold=float(threshold), watchlist_id=w.id,
                threshold_evidence=json.dumps(evidence, sort_keys=True), signage_confirmed=bool(signage_confirmed), notices_confirmed=bool(notices_confirmed), dpia_ref=dpia_ref or "",
                authorising_officer_id=officer_id, status="planned", planned_by_id=actor.user_id, planned_at=self.now(),
            )
            s.add(d)
            s.flush()
            self._audit(s, actor, "deployment.create", f"deployment:{d.id}", {
                "name": name, "use_case": use_case, "location": location, "zone": zone,
                "starts_at": _iso(starts_at), "ends_at": _iso(ends_at), "cameras": cams, "threshold": float(threshold),
                "watchlist_id": w.id, "signage_confirmed": bool(signage_confirmed), "notices_confirmed": bool(notices_confirmed),
                "dpia_ref": dpia_ref or "", "authorising_officer_id": officer_id,
                "threshold_kind": evidence["kind"], "threshold_reason": evidence["reason"], "target_fpir": float(target_fpir),
                "expected_fpir": evidence["expected_fpir"],
            })
            return d

    def _deployment(self, s: Session, deployment_id: int, lock: bool = False) -> Deployment:
        q = select(Deployment).where(Deployment.id == int(deployment_id))
        if lock:
            q = q.with_for_update()
        d = s.execute(q).scalar_one_or_none()
        if d is None:
            raise NotFound(f"no deployment {deployment_id}")
        return d

    def authorise_deployment(self, actor: Actor, deployment_id: int, note: str = "") -> Authorisation:
        with self._tx(actor, "deployment.authorise") as s:
            d = self._deployment(s, deployment_id, lock=True)
            if d.status != "planned":
                raise GovernanceError(f"deployment {d.id} is {d.status}; only a planned deployment can be authorised")
            if d.planned_by_id is not None and d.planned_by_id == actor.user_id:
                raise GovernanceError("a deployment cannot be authorised by the person who planned it")
            if d.authorising_officer_id is not None and d.authorising_officer_id != actor.user_id:
                raise GovernanceError(f"deployment {d.id} names another authorising officer")
            missing = [what for what, ok in (("a DPIA reference", bool(d.dpia_ref.strip())),
                                             ("signage confirmed", d.signage_confirmed),
                                             ("notices confirmed", d.notices_confirmed)) if not ok]
            if missing:
                raise GovernanceError(f"deployment {d.id} lacks {', '.join(missing)}")
            if d.ends_at <= self.now():
                raise GovernanceError(f"deployment {d.id} ends in the past")
            a = Authorisation(deployment_id=d.id, officer_id=actor.user_id, decision="authorised", decided_at=self.now(), note=note or "")
            s.add(a)
            d.status = "authorised"
            if d.authorising_officer_id is None:
                d.authorising_officer_id = actor.user_id
            s.flush()
            self._audit(s, actor, "deployment.authorise", f"deployment:{d.id}", {"authorisation_id": a.id, "note": note or "",
                                                                                 "officer_id": actor.user_id})
            return a

    def start_deployment(self, actor: Actor, deployment_id: int) -> Deployment:
        """Start an authorised deployment inside its window, against a new frozen snapshot."""
        self.enforce_schedule()
        with self._tx(actor, "deployment.start") as s:
            d = self._deployment(s, deployment_id, lock=True)
            now = self.now()
            if d.status != "authorised":
                raise GovernanceError(f"deployment {d.id} is {d.status}; only an authorised deployment can start")
            auth = s.execute(select(Authorisation).where(Authorisation.deployment_id == d.id, Authorisation.decision == "authorised")).first()
            if auth is None:
                raise GovernanceError(f"deployment {d.id} has no authorisation")
            if now < d.starts_at:
                raise GovernanceError(f"deployment {d.id} may not start before {_iso(d.starts_at)}")
            if now >= d.ends_at:
                raise GovernanceError(f"deployment {d.id} ended at {_iso(d.ends_at)}")
            snap = self._make_snapshot(s, d, now)
            d.status, d.started_at = "active", now
            self._audit(s, actor, "deployment.start", f"deployment:{d.id}", {"snapshot_id": snap.id})
            self._audit(s, actor, "snapshot.create", f"snapshot:{snap.id}",
                        {"deployment_id": d.id, "watchlist_id": d.watchlist_id, "subjects": snap.n_subjects, "templates": snap.n_templates})
            return d

    def _make_snapshot(self, s: Session, d: Deployment, now: datetime) -> Snapshot:
        if s.execute(select(Snapshot).where(Snapshot.deployment_id == d.id)).first() is not None:
            raise GovernanceError(f"deployment {d.id} already had a snapshot")
        rows = s.execute(
            select(SubjectRow.id, SubjectRow.name, SubjectRow.category, Template.vector, SubjectRow.volunteer, Template.low_quality_band,
                   Template.second_vector)
            .join(Template, Template.subject_id == SubjectRow.id)
            .where(SubjectRow.watchlist_id == d.watchlist_id, SubjectRow.expires_at > now)
            .order_by(SubjectRow.id, Template.id)
        ).all()
        if not rows:
            raise GovernanceError(f"watchlist {d.watchlist_id} has no unexpired subject with a template")
        # What it held, kept after the templates are deleted (for the deployment report): subjects
        # per category and the volunteers' ids; no names.
        cats: dict[str, int] = {}
        for sid, cat in {(r[0], r[2]) for r in rows}:
            cats[cat] = cats.get(cat, 0) + 1
        composition = {"categories": dict(sorted(cats.items())), "volunteers": sorted({r[0] for r in rows if r[4]})}
        snap = Snapshot(deployment_id=d.id, watchlist_id=d.watchlist_id, created_at=now, delete_by=d.ends_at,
                        n_subjects=len({r[0] for r in rows}), n_templates=len(rows), composition=json.dumps(composition))
        s.add(snap)
        s.flush()
        s.add_all(SnapshotTemplate(snapshot_id=snap.id, subject_id=sid, subject_name=nm, subject_category=cat, vector=vec,
                                   low_quality_band=band, second_vector=second) for sid, nm, cat, vec, _, band, second in rows)
        s.flush()
        return snap

    def _delete_snapshot(self, s: Session, actor: Actor | str, d: Deployment, why: str) -> bool:
        snap = repo.live_snapshot(s, d.id)
        if snap is None:
            return False
        s.execute(delete(SnapshotTemplate).where(SnapshotTemplate.snapshot_id == snap.id))
        snap.deleted_at = self.now()
        self._audit(s, actor, "snapshot.delete", f"snapshot:{snap.id}", {"deployment_id": d.id, "reason": why})
        return True

    def stop_deployment(self, actor: Actor, deployment_id: int, reason: str = "stopped") -> Deployment:
        """End an active deployment (its snapshot is deleted), or cancel one not yet started."""
        with self._tx(actor, "deployment.stop") as s:
            d = self._deployment(s, deployment_id, lock=True)
            now = self.now()
            if d.status == "active":
                d.status, d.ended_at, d.end_reason = "ended", now, reason
                self._audit(s, actor, "deployment.stop", f"deployment:{d.id}", {"reason": reason})
                self._delete_snapshot(s, actor, d, "deployment ended")
            elif d.status in ("planned", "authorised"):
                d.status, d.ended_at, d.end_reason = "cancelled", now, reason
                self._audit(s, actor, "deployment.cancel", f"deployment:{d.id}", {"reason": reason})
            else:
                raise GovernanceError(f"deployment {d.id} is {d.status} already")
            return d

    def enforce_schedule(self, now: datetime | None = None) -> list[int]:
        """End every active deployment past its end time and delete its snapshot; returns their ids.

        Also deletes any snapshot left behind by a deployment that is no longer active.
        """
        system = Actor.system("schedule")
        now = utc(now) if now is not None else self.now()
        ended: list[int] = []
        with self.db.transaction() as s:
            due = s.execute(select(Deployment).where(Deployment.status == "active", Deployment.ends_at <= now)
                            .with_for_update()).scalars().all()
            for d in due:
                d.status, d.ended_at, d.end_reason = "ended", now, "end time reached"
                self._audit(s, system, "deployment.stop", f"deployment:{d.id}", {"reason": "end time reached"})
                self._delete_snapshot(s, system, d, "deployment ended")
                ended.append(d.id)
            left = s.execute(
                select(Deployment).join(Snapshot, Snapshot.deployment_id == Deployment.id)
                .where(Snapshot.deleted_at.is_(None), (Deployment.status != "active") | (Snapshot.delete_by <= now))
            ).scalars().all()
            for d in left:
                if d.status == "active":  # cannot happen after the loop above; kept as a safety net
                    d.status, d.ended_at, d.end_reason = "ended", now, "snapshot expired"
                    self._audit(s, system, "deployment.stop", f"deployment:{d.id}", {"reason": "snapshot expired"})
                self._delete_snapshot(s, system, d, "deployment not active")
        return ended

    def get_deployment(self, actor: Actor, deployment_id: int) -> dict:
        with self._tx(actor, "deployment.read") as s:
            return self._deployment_view(s, self._deployment(s, deployment_id), full=True)

    def list_deployments(self, actor: Actor) -> list[dict]:
        with self._tx(actor, "deployment.read") as s:
            return [self._deployment_view(s, d, full=False) for d in s.execute(select(Deployment).order_by(Deployment.id)).scalars()]

    def _deployment_view(self, s: Session, d: Deployment, full: bool) -> dict:
        w = s.get(WatchlistRow, d.watchlist_id)
        v = {
            "id": d.id, "name": d.name, "status": d.status, "use_case": d.use_case, "location": d.location, "zone": d.zone,
            "starts_at": _iso(d.starts_at), "ends_at": _iso(d.ends_at), "cameras": repo.cameras_of(d), "threshold": d.threshold,
            "watchlist": {"id": w.id, "name": w.name},
        }
        if not full:
            return v
        seen = {cam: n for cam, n in s.execute(select(FacesSeen.camera, FacesSeen.count).where(FacesSeen.deployment_id == d.id))}
        # Alerts against volunteers of a test deployment measure TPIR in the field: they stay out of
        # the operational figures (true alerts, precision, outcomes). A false alert against a
        # volunteer still wrongly flagged a passer-by: it counts in the false alert rate.
        vol_of = dict(s.execute(select(AlertRow.id, SubjectRow.volunteer).join(SubjectRow, SubjectRow.id == AlertRow.subject_id)
                                .where(AlertRow.deployment_id == d.id)).all())
        alerts = [a for a, vol in vol_of.items() if not vol]
        decided: dict[int, str] = {}
        for aid, dec in s.execute(select(Adjudication.alert_id, Adjudication.decision)
                                  .join(AlertRow, AlertRow.id == Adjudication.alert_id)
                                  .where(AlertRow.deployment_id == d.id).order_by(Adjudication.id)):
            decided[aid] = dec  # the latest adjudication counts
        outcomes: dict[str, int] = {}
        results: dict[str, int] = {}
        for aid, res, out in s.execute(select(Engagement.alert_id, Engagement.result, Engagement.outcome)
                                       .join(AlertRow, AlertRow.id == Engagement.alert_id).where(AlertRow.deployment_id == d.id)):
            if vol_of.get(aid):
                continue
            results[res] = results.get(res, 0) + 1
            outcomes[out] = outcomes.get(out, 0) + 1
        true_alerts = sum(1 for a, v_ in decided.items() if v_ == "true_alert" and not vol_of.get(a))
        false_alerts = sum(1 for a, v_ in decided.items() if v_ == "false_alert" and not vol_of.get(a))
        vol_alerts = [a for a, vol in vol_of.items() if vol]
        vol_true = sum(1 for a in vol_alerts if decided.get(a) == "true_alert")
        vol_false = sum(1 for a in vol_alerts if decided.get(a) == "false_alert")
        passes = sum(s.execute(select(VolunteerPass.passes).where(VolunteerPass.deployment_id == d.id)).scalars().all())
        faces = sum(seen.values())
        snap = s.execute(select(Snapshot).where(Snapshot.deployment_id == d.id)).scalar_one_or_none()
        v |= {
            "signage_confirmed": d.signage_confirmed, "notices_confirmed": d.notices_confirmed, "dpia_ref": d.dpia_ref,
            "authorising_officer": repo.user_name(s, d.authorising_officer_id), "planned_by": repo.user_name(s, d.planned_by_id),
            "planned_at": _iso(d.planned_at), "started_at": _iso(d.started_at), "ended_at": _iso(d.ended_at), "end_reason": d.end_reason,
            "authorisations": [
                {"officer": repo.user_name(s, a.officer_id), "decision": a.decision, "decided_at": _iso(a.decided_at), "note": a.note}
                for a in s.execute(select(Authorisation).where(Authorisation.deployment_id == d.id).order_by(Authorisation.id)).scalars()
            ],
            "snapshot": None if snap is None else {
                "id": snap.id, "created_at": _iso(snap.created_at), "delete_by": _iso(snap.delete_by), "deleted_at": _iso(snap.deleted_at),
                "subjects": snap.n_subjects, "templates": snap.n_templates,
                "composition": json.loads(snap.composition) if snap.composition else None,
            },
            "threshold_evidence": json.loads(d.threshold_evidence) if d.threshold_evidence else None,
            "faces_seen": {"total": faces, "by_camera": seen, "too_poor_to_search": int(sum(
                n for (n,) in s.execute(select(FacesSeen.too_poor).where(FacesSeen.deployment_id == d.id))))},
            "alerts": {"total": len(alerts), "true_alerts": true_alerts, "false_alerts": false_alerts,
                       "unadjudicated": sum(1 for a in alerts if a not in decided), "engagements": results, "outcomes": outcomes},
            "volunteers": {"alerts": len(vol_alerts), "true_alerts": vol_true, "false_alerts": vol_false,
                           "unadjudicated": sum(1 for a in vol_alerts if a not in decided), "passes": passes,
                           "field_tpir": (min(vol_true, passes) / passes) if passes else None},
            # The Met's figure and the independent review's figure; both, since they differ.
            "false_alert_rate": ((false_alerts + vol_false) / faces) if faces else None,
            "alert_precision": (true_alerts / (true_alerts + false_alerts)) if (true_alerts + false_alerts) else None,
        }
        return v
