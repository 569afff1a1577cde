"""Retention: the alert retention period and the purge."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..store.models import (
    Adjudication,
    AlertRow,
    AuditEvent,
    Engagement,
    Setting,
    Snapshot,
    SnapshotTemplate,
)
from ..store.scrub import scrub
from .common import DEFAULT_RETENTION_DAYS, RETENTION_KEY, AutoPurged, PurgeReport, _iso
from .errors import GovernanceError
from .roles import Actor


class Retention:
    """Retention and purge. (a part of ``Governance``)"""

    def setting(self, key: str, default, cast=str):
        """A stored setting (``cast`` from its text), or ``default`` when none was set."""
        with self.db.transaction() as s:
            row = s.get(Setting, key)
            return cast(row.value) if row else default

    def change_setting(self, actor: Actor, key: str, value, default) -> None:
        """Set a setting (an administrator's, ``retention.configure``); audited with the value it had."""
        with self._tx(actor, "retention.configure") as s:
            row = s.get(Setting, key)
            was = type(value)(row.value) if row else default
            if row is None:
                s.add(Setting(key=key, value=str(value)))
            else:
                row.value = str(value)
            self._audit(s, actor, "setting.change", key, {"value": value, "was": was})

    def retention_days(self) -> int:
        return self.setting(RETENTION_KEY, DEFAULT_RETENTION_DAYS, int)

    def set_retention_days(self, actor: Actor, days: int) -> None:
        if not (1 <= int(days) <= 3650):
            raise GovernanceError("the alert retention is 1 to 3650 days")
        self.change_setting(actor, RETENTION_KEY, int(days), DEFAULT_RETENTION_DAYS)

    def purge(self, actor: Actor, quiet: bool = False) -> PurgeReport:
        """Stop overdue deployments, delete their snapshots, delete alerts past the retention period.

        ``quiet``: audit only when something was deleted (the automatic purge at every command).
        """
        self._require(actor, "purge.run")
        report = PurgeReport(deployments_ended=self.enforce_schedule())
        with self.db.transaction() as s:
            row = s.get(Setting, RETENTION_KEY)
            report.retention_days = int(row.value) if row else DEFAULT_RETENTION_DAYS
            cutoff = self.now() - timedelta(days=report.retention_days)
            old = select(AlertRow.id).where(AlertRow.recorded_at < cutoff)
            s.execute(delete(Adjudication).where(Adjudication.alert_id.in_(old)))
            s.execute(delete(Engagement).where(Engagement.alert_id.in_(old)))
            report.alerts = s.execute(delete(AlertRow).where(AlertRow.recorded_at < cutoff)).rowcount or 0
            # Snapshots: deleted with their deployment (enforce_schedule); this is the backstop.
            stale = s.execute(select(Snapshot).where(Snapshot.deleted_at.is_(None), Snapshot.delete_by <= self.now())).scalars().all()
            for snap in stale:
                s.execute(delete(SnapshotTemplate).where(SnapshotTemplate.snapshot_id == snap.id))
                snap.deleted_at = self.now()
                report.snapshots += 1
            details = {"alerts": report.alerts, "snapshots": report.snapshots, "retention_days": report.retention_days,
                       "cutoff": _iso(cutoff)}
            if not actor.is_system:
                report.automatic = self._automatic_purges(s)
                details["automatic_since_last_report"] = report.automatic.to_json()
            if report.anything or not quiet:
                self._audit(s, actor, "purge", "", details)
        if report.anything:
            scrub(self.db, ("alerts", "adjudications", "engagements", "snapshot_templates"))
        return report

    def _automatic_purges(self, s: Session) -> AutoPurged:
        """What system purges and schedule stops did since the last purge by a person (audit log)."""
        last = s.execute(select(AuditEvent.seq, AuditEvent.time).where(AuditEvent.action == "purge", ~AuditEvent.actor.like("system%"))
                         .order_by(AuditEvent.seq.desc()).limit(1)).first()
        after = last[0] if last else 0
        out = AutoPurged(since=_iso(last[1]) if last else None)
        q = select(AuditEvent).where(AuditEvent.seq > after, AuditEvent.actor.like("system%"),
                                     AuditEvent.action.in_(("purge", "deployment.stop", "snapshot.delete"))).order_by(AuditEvent.seq)
        for ev in s.execute(q).scalars():
            det = json.loads(ev.details)
            if ev.action == "purge":
                out.alerts += int(det.get("alerts", 0))
                out.snapshots += int(det.get("snapshots", 0))
            elif ev.action == "snapshot.delete":
                out.snapshots += 1
            else:
                out.deployments_ended.append(int(ev.target.split(":")[1]))
            out.entries += 1
            out.first_at = out.first_at or _iso(ev.time)
            out.last_at = _iso(ev.time)
        return out

    def housekeeping(self) -> PurgeReport:
        """The automatic purge: run at the start of every command and periodically by live runs."""
        return self.purge(Actor.system("purge"), quiet=True)
