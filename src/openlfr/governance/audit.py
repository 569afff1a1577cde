"""The audit log: append-only, chained with HMACs under a key kept outside the database.

Entry ``n`` stores ``hash = HMAC-SHA256(key, canonical JSON of {seq, time, actor, action,
target, details, prev_hash})`` where ``prev_hash`` is entry ``n-1``'s hash (64 zeros for the
first), canonical JSON is ``json.dumps(..., sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` and ``time`` is ISO 8601 UTC with microseconds. The key comes from
``audit_key`` (environment or a 0600 file, never the database). Entries written before the
chain was keyed (migration 0004) keep their plain SHA-256 (``keyed`` false); the first keyed
entry links to the last of them, which anchors them.

The ``audit_head`` row holds the latest seq, hash and an HMAC of both (``mac``): appending
locks it (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so
concurrent writers keep one chain, and an entry is written in the same transaction as the
change it records: no change without its entry. Without the key nobody can append an entry,
edit one and recompute the chain, or cut the tail and move the head back.

``verify`` reads only. It names the first broken entry: an edited entry (its hash no longer
matches), an inserted or deleted one (a gap in ``seq`` or a broken ``prev_hash``), a cut-off
tail or forged head; with an ``Anchor`` (``HASH@SEQ`` kept elsewhere) any rewrite up to that
entry, truncation included; and (``audit_records``) any decision-bearing record that no longer
matches the entries about it. Details never hold templates, images, passwords, or the names
of subjects.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Iterable, Iterator

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..store.models import GENESIS_HASH, AuditEvent, AuditHead
from ..store.types import utc
from .audit_key import KEY_ENV, KEY_FILE_ENV, AuditKey, AuditKeyError, load_key
from .errors import GovernanceError


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def time_text(t: datetime) -> str:
    return utc(t).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditChainBroken(GovernanceError):
    """The chain's end is not what openlfr wrote (head missing, moved, or rows after it): nothing
    more is appended until someone has looked (``openlfr audit verify`` names the break)."""


def entry_hash(seq: int, time: datetime | str, actor: str, action: str, target: str, details, prev_hash: str,
               key: AuditKey | None = None) -> str:
    """The entry's hash: HMAC-SHA256 under ``key``, or (``key`` None) the plain SHA-256 of
    entries written before the chain was keyed."""
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
    data = canonical_json(body).encode("utf-8")
    return key.mac(data) if key is not None else hashlib.sha256(data).hexdigest()


def head_mac(key: AuditKey, seq: int, hash_: str) -> str:
    """The head's MAC: binds the latest (seq, hash) to the key, so the head cannot be moved back."""
    return key.mac(f"openlfr audit head|{int(seq)}|{hash_}".encode("ascii"))


def append(s: Session, now: datetime, actor: str, action: str, target: str = "", details: dict | None = None,
           key: AuditKey | None = None) -> AuditEvent:
    """Append one keyed entry in ``s``'s transaction (call it last in the transaction).

    Refuses (``AuditChainBroken``) when the chain's end is not what openlfr wrote: the head row
    missing, entries after the head, or a head whose MAC does not match; and (``AuditKeyError``)
    under a key other than the one the database's chain uses.
    """
    if key is None:
        key = load_key()
    head = s.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one_or_none()
    last = s.execute(select(func.max(AuditEvent.seq))).scalar() or 0
    if head is None:  # the migration creates it; tolerate a hand-made, empty database
        if last:
            raise AuditChainBroken("the audit log's head row is missing: run `openlfr audit verify`; nothing is written until it is resolved")
        head = AuditHead(id=1, seq=0, hash=GENESIS_HASH)
        s.add(head)
        s.flush()
    if last != head.seq:
        raise AuditChainBroken(f"the audit log ends at entry {last} but its head says {head.seq}: run `openlfr audit verify`; "
                               "nothing is written until it is resolved")
    if head.key_id is not None and head.key_id != key.key_id:
        raise AuditKeyError(f"this database's audit chain is keyed with key id {head.key_id}, and this process has key id "
                            f"{key.key_id} ({key.source}): use the same key everywhere (${KEY_FILE_ENV} or ${KEY_ENV})")
    if head.mac is not None and head.mac != head_mac(key, head.seq, head.hash):
        raise AuditChainBroken("the audit log's head was changed outside openlfr: run `openlfr audit verify`; "
                               "nothing is written until it is resolved")
    details_json = canonical_json(details or {})
    seq = head.seq + 1
    now = utc(now)  # both databases keep microseconds: what is hashed is what is read back
    h = entry_hash(seq, now, actor, action, target, details_json, head.hash, key)
    ev = AuditEvent(seq=seq, time=now, actor=actor, action=action, target=target, details=details_json, prev_hash=head.hash,
                    hash=h, keyed=True)
    s.add(ev)
    head.seq, head.hash, head.mac, head.key_id = seq, h, head_mac(key, seq, h), key.key_id
    s.flush()
    return ev


@dataclass(frozen=True)
class Anchor:
    """An entry's hash and seq kept outside the database (``HASH@SEQ``), printed by ``audit export``."""

    hash: str
    seq: int

    @classmethod
    def parse(cls, text: str) -> "Anchor":
        h, sep, seq = (text or "").strip().partition("@")
        if not sep or not seq.isdigit() or int(seq) < 1 or len(h) != 64 or any(c not in "0123456789abcdef" for c in h.lower()):
            raise GovernanceError(f"an anchor is HASH@SEQ (64 hex digits, @, an entry number), not {text!r}")
        return cls(h.lower(), int(seq))

    def __str__(self) -> str:
        return f"{self.hash}@{self.seq}"


@dataclass
class VerifyResult:
    ok: bool
    entries: int
    first_broken: int | None = None  # seq of the first broken entry
    reason: str = ""
    anchor: Anchor | None = None  # the last entry, as an anchor to keep
    notes: list[str] = field(default_factory=list)  # what was not (or could not be) checked

    def __str__(self) -> str:
        if self.ok:
            text = f"audit chain intact: {self.entries} entries"
            if self.anchor is not None:
                text += f"; anchor {self.anchor}"
            return text + "".join(f"\nnote: {n}" for n in self.notes)
        where = f"at entry {self.first_broken}" if self.first_broken is not None else "in the records it covers"
        return f"audit chain broken {where}: {self.reason}"


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
        "keyed": bool(ev.keyed),
    }


@dataclass
class Head:
    seq: int
    hash: str
    mac: str | None = None
    key_id: str | None = None


def verify_records(records: Iterable[dict], head: Head | tuple[int, str] | None = None, key: AuditKey | None = None,
                   anchor: Anchor | None = None) -> VerifyResult:
    """Check entries (ordered by seq), the head when given, and an anchor when given.

    Entries marked ``keyed`` are checked against ``key``; without it only their links are (a note
    says so). Unkeyed entries (written before the chain was keyed) must all come first: the first
    keyed entry's link anchors them. Never raises on bad input: it names the first break.
    """
    if isinstance(head, tuple):
        head = Head(*head)
    prev_hash, expected, n = GENESIS_HASH, 1, 0
    keyed_seen, unchecked, legacy = False, 0, 0
    anchor_met = anchor is None
    for r in records:
        try:
            seq, keyed = int(r["seq"]), bool(r.get("keyed", False))
            if seq != expected:
                what = "missing" if seq > expected else "duplicated or out of order"
                return VerifyResult(False, n, seq, f"expected entry {expected} before it; entries {what} (deleted or inserted)")
            if r["prev_hash"] != prev_hash:
                return VerifyResult(False, n, seq, "prev_hash does not match the previous entry's hash (an entry was inserted or deleted before it)")
            if keyed:
                keyed_seen = True
            elif keyed_seen:
                return VerifyResult(False, n, seq, "an unkeyed entry after keyed ones (written without the audit key)")
            else:
                legacy += 1
            if keyed and key is None:
                unchecked += 1
            elif entry_hash(seq, r["time"], r["actor"], r["action"], r["target"], r["details"], r["prev_hash"],
                            key if keyed else None) != r["hash"]:
                return VerifyResult(False, n, seq, "its content does not match its hash (edited, or written without the audit key)")
        except (KeyError, TypeError, ValueError) as e:
            return VerifyResult(False, n, expected, f"a malformed entry ({type(e).__name__}: {e})")
        if anchor is not None and seq == anchor.seq:
            if r["hash"] != anchor.hash:
                return VerifyResult(False, n, seq, f"it does not match the anchor {anchor}: the log was rewritten up to here")
            anchor_met = True
        prev_hash, expected, n = r["hash"], expected + 1, n + 1
    last = expected - 1
    if not anchor_met:
        return VerifyResult(False, n, last + 1, f"the log ends at entry {last}, before the anchor's entry {anchor.seq} (entries deleted from the end)")
    if head is not None:
        if head.seq > last:
            return VerifyResult(False, n, last + 1, f"the log ends at entry {last} but {head.seq} were written (entries deleted from the end)")
        if head.seq < last:
            return VerifyResult(False, n, head.seq + 1, f"entries {head.seq + 1}..{last} were not written by openlfr (inserted at the end)")
        if head.hash != prev_hash:
            return VerifyResult(False, n, last, "the last entry is not the one openlfr wrote (replaced)")
        if keyed_seen:
            if head.mac is None:
                return VerifyResult(False, n, last, "the head has lost its MAC (changed outside openlfr)")
            if key is not None and head.mac != head_mac(key, head.seq, head.hash):
                return VerifyResult(False, n, last, "the head's MAC does not match (entries cut from the end and the head moved back)")
    out = VerifyResult(True, n, anchor=Anchor(prev_hash, last) if last else None)
    if unchecked:
        out.notes.append(f"{unchecked} keyed entries checked for their links only: no audit key to check their MACs")
    if legacy and not keyed_seen:
        out.notes.append(f"all {legacy} entries predate the keyed chain (unkeyed): the next entry written anchors them; "
                         "only an anchor kept elsewhere shows they were not rewritten")
    elif legacy:
        out.notes.append(f"entries 1..{legacy} predate the keyed chain (plain SHA-256), anchored by keyed entry {legacy + 1}")
    return out


def _db_records(s: Session) -> Iterator[dict]:
    for ev in s.execute(select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=1000)).scalars():
        yield record_of(ev)


def read_head(s: Session) -> Head:
    head = s.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one_or_none()
    if head is None:  # deleted: verify against "nothing written", which names the break
        return Head(0, GENESIS_HASH)
    return Head(head.seq, head.hash, head.mac, head.key_id)


def verify(s: Session, key: AuditKey | None = None, anchor: Anchor | None = None, records: bool = True) -> VerifyResult:
    """Verify the database's chain, head and (``records``) the records it covers; reads only."""
    head = read_head(s)
    if s.execute(select(AuditHead.id).where(AuditHead.id == 1)).first() is None:
        n = s.execute(select(func.count()).select_from(AuditEvent)).scalar() or 0
        if n:
            return VerifyResult(False, 0, None, f"the audit log's head row is missing ({n} entries; deleted outside openlfr)")
    if key is not None and head.key_id is not None and head.key_id != key.key_id:
        return VerifyResult(False, 0, None, f"the audit key given ({key.source}, id {key.key_id}) is not the one this "
                                            f"database's chain uses (id {head.key_id}): cannot verify")
    result = verify_records(_db_records(s), head, key, anchor)
    if result.ok and records:
        from .audit_records import check_records

        problem = check_records(s)
        if problem is not None:
            seq, why = problem
            return VerifyResult(False, result.entries, seq, why)
    return result


def export(s: Session, out: IO[str]) -> tuple[int, Anchor | None]:
    """Write every entry as one JSON line; returns the count and the anchor of the last entry."""
    n, last = 0, None
    for r in _db_records(s):
        out.write(canonical_json(r) + "\n")
        n, last = n + 1, r
    return n, (Anchor(last["hash"], last["seq"]) if last else None)


def read_export(lines: Iterable[str]) -> Iterator[dict]:
    """The entries of an export; a line that is not JSON ends the walk as a malformed entry."""
    for line in lines:
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError:
                yield {"malformed": line[:80]}
