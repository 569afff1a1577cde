"""Reading the audit log: verification and export."""

from __future__ import annotations

from typing import IO

from . import audit
from .common import Exported
from .roles import Actor


class AuditAccess:
    """The audit log, read. (a part of ``Governance``)"""

    def verify_audit(self, actor: Actor, anchor: audit.Anchor | str | None = None) -> audit.VerifyResult:
        """Walk the keyed chain, its head, an ``anchor`` (``HASH@SEQ``) and the records it covers.

        Reads only (a refusal for the role is audited, as everywhere)."""
        if isinstance(anchor, str):
            anchor = audit.Anchor.parse(anchor)
        with self._tx(actor, "audit.read") as s:
            return audit.verify(s, self.key, anchor)

    def export_audit(self, actor: Actor, out: IO[str]) -> "Exported":
        """Write the log as JSON lines; returns the count, with ``.anchor`` (the last entry's
        ``HASH@SEQ``: keep it elsewhere, and ``audit verify --anchor`` detects any rewrite up to it)."""
        with self._tx(actor, "audit.read") as s:
            n, anchor = audit.export(s, out)
        with self.db.transaction() as s:
            self._audit(s, actor, "audit.export", "", {"entries": n, "anchor": str(anchor) if anchor else None})
        return Exported(n, anchor)
