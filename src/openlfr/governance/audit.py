"""The audit log: append-only, hash-chained.

Entry ``n`` stores ``hash = sha256(canonical JSON of {seq, time, actor, action, target,
details, prev_hash})`` where ``prev_hash`` is entry ``n-1``'s hash (64 zeros for the first)
and canonical JSON is ``json.dumps(..., sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` with ``time`` as ISO 8601 UTC with microseconds. The ``audit_head`` row
holds the latest seq and hash; appending locks it (``SELECT ... FOR UPDATE`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite), so concurrent writers keep one chain, and an entry is written
in the same transaction as the change it records: no change without its entry.

``verify`` walks the chain and names the first broken entry: an edited entry (its hash no
longer matches its content), an inserted or deleted one (a gap in ``seq`` or a ``prev_hash``
that is not its predecessor's hash), or a cut-off tail (the head row points past the last
entry). Details never hold templates, images, passwords, or the names of subjects.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Iterable, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..store.models import GENESIS_HASH, AuditEvent, AuditHead
from ..store.types import utc


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def time_text(t: datetime) -> str:
    return utc(t).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(seq: int, time: datetime | str, actor: str, action: str, target: str, details, prev_hash: str) -> str:
    if isinstance(details, str):
        details = json.loads(details)
    body = {
        "seq": int(seq),
        "time": time if isinstance(time, str) else time_text(time),
        "actor": actor,
        "action": action,
        "target": target,
        "details": details,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def append(s: Session, now: datetime, actor: str, action: str, target: str = "", details: dict | None = None) -> AuditEvent:
    """Append one entry in ``s``'s transaction (call it last in the transaction)."""
    head = s.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one_or_none()
    if head is None:  # the migration creates it; tolerate a hand-made database
        head = AuditHead(id=1, seq=0, hash=GENESIS_HASH)
        s.add(head)
        s.flush()
    details_json = canonical_json(details or {})
    seq = head.seq + 1
    now = utc(now)  # both databases keep microseconds: what is hashed is what is read back
    h = entry_hash(seq, now, actor, action, target, details_json, head.hash)
    ev = AuditEvent(seq=seq, time=now, actor=actor, action=action, target=target, details=details_json, prev_hash=head.hash, hash=h)
    s.add(ev)
    head.seq, head.hash = seq, h
    s.flush()
    return ev


@dataclass
class VerifyResult:
    ok: bool
    entries: int
    first_broken: int | None = None  # seq of the first broken entry
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.entries} entries"
        return f"audit chain broken at entry {self.first_broken}: {self.reason}"


def record_of(ev: AuditEvent) -> dict:
    return {
        "seq": ev.seq,
        "time": time_text(ev.time),
        "actor": ev.actor,
        "action": ev.action,
        "target": ev.target,
        "details": json.loads(ev.details),
        "prev_hash": ev.prev_hash,
        "hash": ev.hash,
    }


def verify_records(records: Iterable[dict], head: tuple[int, str] | None = None) -> VerifyResult:
    """Check a sequence of entries (ordered by seq) and, when given, the head (seq, hash)."""
    prev_hash, expected, n = GENESIS_HASH, 1, 0
    for r in records:
        seq = r["seq"]
        if seq != expected:
            what = "missing" if seq > expected else "duplicated or out of order"
            return VerifyResult(False, n, seq, f"expected entry {expected} before it; entries {what} (deleted or inserted)")
        if r["prev_hash"] != prev_hash:
            return VerifyResult(False, n, seq, "prev_hash does not match the previous entry's hash (an entry was inserted or deleted before it)")
        if entry_hash(seq, r["time"], r["actor"], r["action"], r["target"], r["details"], r["prev_hash"]) != r["hash"]:
            return VerifyResult(False, n, seq, "its content does not match its hash (edited)")
        prev_hash, expected, n = r["hash"], expected + 1, n + 1
    if head is not None:
        head_seq, head_hash = head
        last = expected - 1
        if head_seq > last:
            return VerifyResult(False, n, last + 1, f"the log ends at entry {last} but {head_seq} were written (entries deleted from the end)")
        if head_seq < last:
            return VerifyResult(False, n, head_seq + 1, f"entries {head_seq + 1}..{last} were not written by openlfr (inserted at the end)")
        if head_hash != prev_hash:
            return VerifyResult(False, n, last, "the last entry is not the one openlfr wrote (replaced)")
    return VerifyResult(True, n)


def _db_records(s: Session) -> Iterator[dict]:
    for ev in s.execute(select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=1000)).scalars():
        yield record_of(ev)


def verify(s: Session) -> VerifyResult:
    head = s.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one_or_none()
    return verify_records(_db_records(s), (head.seq, head.hash) if head else (0, GENESIS_HASH))


def export(s: Session, out: IO[str]) -> int:
    """Write every entry as one JSON line; returns the count."""
    n = 0
    for r in _db_records(s):
        out.write(canonical_json(r) + "\n")
        n += 1
    return n


def read_export(lines: Iterable[str]) -> Iterator[dict]:
    for line in lines:
        if line.strip():
            yield json.loads(line)
