"""Alerts under review: listing, media, adjudication and engagement outcomes."""

from __future__ import annotations

import json

from sqlalchemy import select

from ..store import repository as repo
from ..store.models import (
    Adjudication,
    AlertRow,
    Engagement,
    SubjectRow,
)
from .adjudication import decide
from .common import OUTCOMES, RESULTS, _iso, alert_decision
from .errors import GovernanceError, NotFound, PermissionDenied
from .roles import Actor


class AlertReview:
    """Alerts under review. (a part of ``Governance``)"""

    def list_alerts(self, actor: Actor, deployment_id: int | None = None, limit: int = 1000) -> list[dict]:
        """Alerts without their crops and templates (newest first)."""
        with self._tx(actor, "alert.read") as s:
            q = select(AlertRow).order_by(AlertRow.id.desc()).limit(limit)
            if deployment_id is not None:
                q = q.where(AlertRow.deployment_id == int(deployment_id))
            out = []
            for a in s.execute(q).scalars():
                adj = s.execute(select(Adjudication).where(Adjudication.alert_id == a.id).order_by(Adjudication.id.desc()).limit(1)).scalar_one_or_none()
                eng = s.execute(select(Engagement).where(Engagement.alert_id == a.id).order_by(Engagement.id.desc()).limit(1)).scalar_one_or_none()
                subj = s.get(SubjectRow, a.subject_id)
                out.append({
                    "id": a.id, "deployment_id": a.deployment_id, "camera": a.camera, "track": a.track,
                    "subject_id": a.subject_id, "subject_name": subj.name if subj else None, "category": subj.category if subj else None,
                    "distance": a.distance, "distances": json.loads(a.distances), "frame": a.frame, "media_time": a.media_time,
                    "occurred_at": _iso(a.occurred_at), "recorded_at": _iso(a.recorded_at), "updates": a.updates,
                    "adjudication": adj.decision if adj else None, "engagement": (eng.result, eng.outcome) if eng else None,
                    **alert_decision(a),
                })
            return out

    def alert_media(self, actor: Actor, alert_id: int) -> tuple[bytes, bytes]:
        """(probe crop JPEG, template bytes) of one alert, for the operator's console."""
        with self._tx(actor, "alert.read") as s:
            a = s.get(AlertRow, int(alert_id))
            if a is None:
                raise NotFound(f"no alert {alert_id}")
            return a.probe_crop, a.template

    def adjudicate(self, actor: Actor, alert_id: int, decision: str, note: str = "", reason: str = "") -> Adjudication:
        """Record a decision (true or false alert); changing one needs a ``reason`` and the rule
        of ``governance/adjudication.py`` (a supervisor after an outcome or the deployment's end).
        The history is kept: a change is a new row and a new entry."""
        if not (actor.can("alert.adjudicate") or actor.can("alert.revise")):
            self._require(actor, "alert.adjudicate")
        try:
            with self.db.transaction() as s:
                j, new = decide(s, actor, alert_id, decision, note, reason, self.now())
                if new:
                    self._audit(s, actor, "alert.adjudicate", f"alert:{j.alert_id}", {
                        "decision": j.decision, "note": j.note, "reason": j.reason, "adjudication_id": j.id})
                return j
        except PermissionDenied:
            with self.db.transaction() as s:
                self._audit(s, actor, "permission.denied", "alert.revise" if actor.can("alert.adjudicate") else "alert.adjudicate", {})
            raise

    def adjudications(self, actor: Actor, alert_id: int) -> list[dict]:
        """An alert's decisions in time order (the history: first decision and every revision)."""
        with self._tx(actor, "alert.read") as s:
            return [{"id": j.id, "decision": j.decision, "by": repo.user_name(s, j.user_id), "at": _iso(j.decided_at),
                     "note": j.note, "reason": j.reason}
                    for j in s.execute(select(Adjudication).where(Adjudication.alert_id == int(alert_id)).order_by(Adjudication.id)).scalars()]

    def record_outcome(self, actor: Actor, alert_id: int, result: str, outcome: str, note: str = "") -> Engagement:
        if result not in RESULTS:
            raise GovernanceError(f"an engagement result is one of {', '.join(RESULTS)}")
        if outcome not in OUTCOMES:
            raise GovernanceError(f"an outcome is one of {', '.join(OUTCOMES)}")
        with self._tx(actor, "alert.outcome") as s:
            a = s.get(AlertRow, int(alert_id))
            if a is None:
                raise NotFound(f"no alert {alert_id}")
            last = s.execute(select(Adjudication.decision).where(Adjudication.alert_id == a.id).order_by(Adjudication.id.desc()).limit(1)).scalar_one_or_none()
            if last != "true_alert":
                raise GovernanceError(f"alert {a.id} has not been adjudicated a true alert")
            subj = s.get(SubjectRow, a.subject_id)
            if subj is not None and subj.volunteer and outcome == "arrest":
                raise GovernanceError(f"alert {a.id} is for a volunteer of a test deployment: no arrest can be recorded")
            e = Engagement(alert_id=a.id, user_id=actor.user_id, result=result, outcome=outcome, recorded_at=self.now(), note=note or "")
            s.add(e)
            s.flush()
            self._audit(s, actor, "alert.outcome", f"alert:{a.id}", {"result": result, "outcome": outcome, "note": note or "",
                                                                    "engagement_id": e.id})
            return e
