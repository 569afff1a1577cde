"""Transparency records of a deployment: calibrated thresholds, volunteers, history."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select

from ..store.models import (
    AuditEvent,
    Deployment,
    SubjectRow,
    VolunteerPass,
)
from . import audit
from .errors import GovernanceError
from .roles import Actor


class DeploymentRecords:
    """A deployment's transparency records. (a part of ``Governance``)"""

    def store_threshold_evidence(self, actor: Actor, deployment_id: int, evidence: dict) -> Deployment:
        """Set a planned deployment's threshold from a calibration and keep the evidence with it.

        Only before authorisation, so that the authorising officer sees the threshold and how it
        was chosen. ``evidence`` is the calibration's summary (``openlfr calibrate --json``): it
        must hold ``threshold``, ``watchlist_size`` and ``target_fpir``.
        """
        try:
            threshold = float(evidence["threshold"])
            size, target = int(evidence["watchlist_size"]), float(evidence["target_fpir"])
        except (KeyError, TypeError, ValueError):
            raise GovernanceError("threshold evidence must hold threshold, watchlist_size and target_fpir") from None
        if not (0.0 < threshold < 2.0):
            raise GovernanceError("the threshold is a descriptor distance in (0, 2)")
        text = json.dumps(evidence, sort_keys=True, default=str)
        with self._tx(actor, "deployment.plan") as s:
            d = self._deployment(s, deployment_id, lock=True)
            if d.status != "planned":
                raise GovernanceError(f"deployment {d.id} is {d.status}; the threshold can change only while it is planned")
            was = d.threshold
            d.threshold, d.threshold_evidence = threshold, text
            self._audit(s, actor, "deployment.threshold", f"deployment:{d.id}", {
                "threshold": threshold, "was": was, "watchlist_size": size, "target_fpir": target,
                "tpir": evidence.get("tpir"), "tpir_ci95": evidence.get("tpir_ci95"),
                "evidence_sha256": hashlib.sha256(text.encode()).hexdigest()})
            return d

    def record_volunteer_passes(self, actor: Actor, deployment_id: int, subject_id: int, passes: int) -> None:
        """How many times a volunteer walked past the cameras (sets the count; for field TPIR)."""
        if int(passes) < 0:
            raise GovernanceError("passes cannot be negative")
        with self._tx(actor, "volunteer.record") as s:
            d = self._deployment(s, deployment_id)
            if d.status not in ("active", "ended"):
                raise GovernanceError(f"deployment {d.id} is {d.status}: passes are recorded once it has run")
            subj = s.get(SubjectRow, int(subject_id))
            if subj is None or subj.watchlist_id != d.watchlist_id or not subj.volunteer:
                raise GovernanceError(f"subject {subject_id} is not a volunteer on deployment {d.id}'s watchlist")
            row = s.get(VolunteerPass, (d.id, subj.id))
            if row is None:
                s.add(VolunteerPass(deployment_id=d.id, subject_id=subj.id, passes=int(passes), recorded_at=self.now(),
                                    recorded_by_id=actor.user_id))
            else:
                row.passes, row.recorded_at, row.recorded_by_id = int(passes), self.now(), actor.user_id
            self._audit(s, actor, "volunteer.passes", f"deployment:{d.id}", {"subject_id": subj.id, "passes": int(passes)})

    def deployment_history(self, actor: Actor, deployment_id: int) -> dict:
        """The audit entries about one deployment, for its report, and whether the chain is intact.

        ``events``: entries whose target is the deployment, that name it (``deployment_id``: alerts,
        snapshots), adjudications and outcomes of its alerts, erasures of subjects it alerted on,
        and every purge (retention is global). ``subjects``: the volunteer flag of each subject
        still on record that it alerted on. Reading is not audited.
        """
        with self._tx(actor, "audit.read") as s:
            self._deployment(s, deployment_id)
            ok = audit.verify(s, self.key)
            key = f'"deployment_id":{int(deployment_id)}'
            q = select(AuditEvent).where(
                (AuditEvent.target == f"deployment:{int(deployment_id)}")
                | AuditEvent.details.like(f"%{key},%") | AuditEvent.details.like(f"%{key}}}%")
                | AuditEvent.action.in_(("alert.adjudicate", "alert.outcome", "purge", "subject.erase"))
            ).where(AuditEvent.action != "faces_seen.count").order_by(AuditEvent.seq)
            events, alert_ids, subject_ids = [], set(), set()
            for ev in s.execute(q).scalars():
                r = audit.record_of(ev)
                det = r["details"]
                if r["action"] in ("alert.create", "alert.update") and det.get("deployment_id") == int(deployment_id):
                    alert_ids.add(r["target"])
                    subject_ids.add(det.get("subject_id"))
                elif r["action"] in ("alert.adjudicate", "alert.outcome"):
                    if r["target"] not in alert_ids:
                        continue
                elif r["action"] == "subject.erase":
                    if int(r["target"].split(":")[1]) not in subject_ids:
                        continue
                elif r["action"] != "purge" and det.get("deployment_id", int(deployment_id)) != int(deployment_id) \
                        and r["target"] != f"deployment:{int(deployment_id)}":
                    continue
                events.append({k: r[k] for k in ("seq", "time", "actor", "action", "target", "details")})
            flags = dict(s.execute(select(SubjectRow.id, SubjectRow.volunteer).where(SubjectRow.id.in_(
                [i for i in subject_ids if i is not None]))).all()) if subject_ids else {}
            return {"audit": {"ok": ok.ok, "entries": ok.entries, "first_broken": ok.first_broken, "reason": ok.reason},
                    "events": events, "subjects": {int(k): {"volunteer": bool(v)} for k, v in flags.items()}}
