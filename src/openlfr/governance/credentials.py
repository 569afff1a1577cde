"""Credentials that follow their user: a password change and a role change end what they should.

- A user changes their own password only by giving the current one (an administrator too, for
  their own); an administrator (``user.change``) resets someone else's without it, and the audit
  says it was a reset. Either way every other session and token of that user (console sessions,
  API tokens, camera worker tokens) is revoked: whoever had learnt the old password, or a token
  made with it, is out. The request that made the change keeps its own credential.
- A role change that takes away the permission a worker token needs (``deployment.run``)
  revokes that user's worker tokens in the same transaction; API tokens follow the user's roles
  at each request already.

Each revocation is an audit entry (``token.revoke`` with the reason), written in the same
transaction as the change.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..store.models import ApiToken
from . import audit
from .errors import AuthenticationError, GovernanceError, NotFound
from .passwords import check_strength, hash_password, verify_password
from .roles import PERMISSIONS, Actor

WORKER_PERMISSION = "deployment.run"


def revoke_tokens(s: Session, now, actor_name: str, user_id: int, reason: str, kinds: tuple[str, ...] | None = None,
                  keep_token_id: int | None = None, key=None) -> list[int]:
    """Revoke the user's live tokens (of ``kinds``; all kinds when None), except ``keep_token_id``."""
    q = select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
    if kinds is not None:
        q = q.where(ApiToken.kind.in_(kinds))
    revoked = []
    for row in s.execute(q.order_by(ApiToken.id)).scalars():
        if row.id == keep_token_id:
            continue
        row.revoked_at = now
        revoked.append(row.id)
        audit.append(s, now, actor_name, "token.revoke", f"token:{row.id}", {"kind": row.kind, "reason": reason}, key)
    return revoked


def change_password(gov, actor: Actor, name: str, new_password: str, old_password: str | None = None,
                    keep_token_id: int | None = None) -> list[int]:
    """Set ``name``'s password; returns the ids of the tokens revoked (see the module docstring).

    Raises ``AuthenticationError`` when one's own current password is missing or wrong,
    ``PermissionDenied`` (audited) for someone else's without ``user.change``.
    """
    try:
        check_strength(new_password)
    except ValueError as e:
        raise GovernanceError(str(e)) from None
    own = actor.user_id is not None and actor.name == name
    if not own:
        gov._require(actor, "user.change")
    from ..store import repository as repo

    now = gov.now()
    with gov.db.transaction() as s:
        u = repo.user_by_name(s, name)
        if u is None:
            raise NotFound(f"no user {name}")
        if own and not (old_password and verify_password(u.password_hash, old_password)):
            wrong = AuthenticationError("changing your own password needs your current password" if not old_password
                                        else "the current password is wrong")
        else:
            wrong = None
        if wrong is None:
            u.password_hash = hash_password(new_password)
            revoked = revoke_tokens(s, now, actor.name, u.id, "password changed" if own else "password reset",
                                    keep_token_id=keep_token_id if own else None, key=gov.key)
            audit.append(s, now, actor.name, "user.change", f"user:{u.id}",
                         {"password": "changed" if own else "reset", "tokens_revoked": len(revoked)}, gov.key)
            return revoked
    with gov.db.transaction() as s:  # the refusal is audited, the password is not changed
        audit.append(s, now, actor.name, "login.failed", f"user:{u.id}", {"reason": "wrong current password on a password change"}, gov.key)
    raise wrong


def revoke_unallowed_worker_tokens(s: Session, now, actor_name: str, user_id: int, roles, key=None) -> list[int]:
    """After a role change: the user's worker tokens, when their roles no longer allow ``deployment.run``."""
    if set(roles) & PERMISSIONS[WORKER_PERMISSION]:
        return []
    return revoke_tokens(s, now, actor_name, user_id, f"roles changed: no longer {WORKER_PERMISSION}", kinds=("worker",), key=key)
