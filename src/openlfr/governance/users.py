"""Users: accounts, roles, passwords and logins."""

from __future__ import annotations

from typing import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..store import repository as repo
from ..store.models import (
    AuditHead,
    User,
    UserRole,
)
from . import credentials
from .common import USER_NAME, _iso
from .errors import AuthenticationError, GovernanceError, NotFound
from .passwords import (
    check_strength,
    dummy_verify,
    hash_password,
    needs_rehash,
    verify_password,
)
from .roles import ADMINISTRATOR, Actor, check_roles


class UserAdmin:
    """Users, roles, passwords and logins. (a part of ``Governance``)"""

    def user_count(self) -> int:
        with self.db.transaction() as s:
            return repo.user_count(s)

    def bootstrap_admin(self, name: str, password: str, roles: Sequence[str] = (ADMINISTRATOR,)) -> User:
        """The first user of an empty database: an administrator, created without credentials."""
        roles = check_roles(roles)
        if ADMINISTRATOR not in roles:
            raise GovernanceError("the first user must be an administrator (--role administrator)")
        self._check_new_user(name, password)
        with self.db.transaction() as s:
            s.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update())  # one bootstrap at a time
            if repo.user_count(s):
                raise GovernanceError("users exist already: log in as an administrator (--as NAME) to add one")
            u = self._insert_user(s, name, roles, password, "bootstrap")
            self._audit(s, "bootstrap", "user.create", f"user:{u.id}", {"name": name, "roles": sorted(roles), "bootstrap": True})
            return u

    def _check_new_user(self, name: str, password: str) -> None:
        if not USER_NAME.match(name or ""):
            raise GovernanceError("a user name is 1-100 characters: letters, digits, . _ @ -")
        try:
            check_strength(password)
        except ValueError as e:
            raise GovernanceError(str(e)) from None

    def _insert_user(self, s: Session, name: str, roles, password: str, created_by: str) -> User:
        if repo.user_by_name(s, name) is not None:
            raise GovernanceError(f"user {name} exists already")
        u = User(name=name, password_hash=hash_password(password), active=True, created_at=self.now(), created_by=created_by)
        s.add(u)
        s.flush()
        for r in sorted(roles):
            s.add(UserRole(user_id=u.id, role=r))
        s.flush()
        return u

    def create_user(self, actor: Actor, name: str, roles: Sequence[str], password: str) -> User:
        try:
            roles = check_roles(roles)
        except ValueError as e:
            raise GovernanceError(str(e)) from None
        self._check_new_user(name, password)
        with self._tx(actor, "user.create") as s:
            u = self._insert_user(s, name, roles, password, actor.name)
            self._audit(s, actor, "user.create", f"user:{u.id}", {"name": name, "roles": sorted(roles)})
            return u

    def set_roles(self, actor: Actor, name: str, roles: Sequence[str]) -> None:
        try:
            roles = check_roles(roles)
        except ValueError as e:
            raise GovernanceError(str(e)) from None
        with self._tx(actor, "user.change") as s:
            u = self._user(s, name)
            before = repo.roles_of(s, u.id)
            if ADMINISTRATOR in before and ADMINISTRATOR not in roles:
                self._keep_an_admin(s, u.id)
            s.execute(delete(UserRole).where(UserRole.user_id == u.id))
            for r in sorted(roles):
                s.add(UserRole(user_id=u.id, role=r))
            self._audit(s, actor, "user.change", f"user:{u.id}", {"roles": sorted(roles), "was": sorted(before)})
            credentials.revoke_unallowed_worker_tokens(s, self.now(), actor.name, u.id, roles, key=self.key)

    def set_active(self, actor: Actor, name: str, active: bool) -> None:
        with self._tx(actor, "user.change") as s:
            u = self._user(s, name)
            if not active and ADMINISTRATOR in repo.roles_of(s, u.id):
                self._keep_an_admin(s, u.id)
            u.active = active
            self._audit(s, actor, "user.change", f"user:{u.id}", {"active": active})

    def set_password(self, actor: Actor, name: str, password: str, old_password: str | None = None,
                     keep_token_id: int | None = None) -> list[int]:
        """A user changes their own (with the current one), or an administrator resets one; the
        user's other sessions and tokens are revoked (``credentials.change_password``)."""
        return credentials.change_password(self, actor, name, password, old_password, keep_token_id)

    def _keep_an_admin(self, s: Session, user_id: int) -> None:
        others = s.execute(
            select(User.id).join(UserRole, UserRole.user_id == User.id)
            .where(UserRole.role == ADMINISTRATOR, User.active.is_(True), User.id != user_id)
        ).first()
        if others is None:
            raise GovernanceError("this is the last active administrator")

    def _user(self, s: Session, name: str) -> User:
        u = repo.user_by_name(s, name)
        if u is None:
            raise NotFound(f"no user {name}")
        return u

    def list_users(self, actor: Actor) -> list[dict]:
        with self._tx(actor, "user.list") as s:
            return [
                {"id": u.id, "name": u.name, "roles": sorted(repo.roles_of(s, u.id)), "active": u.active,
                 "created_at": _iso(u.created_at), "created_by": u.created_by}
                for u in s.execute(select(User).order_by(User.id)).scalars()
            ]

    def authenticate(self, name: str, password: str) -> Actor:
        """Check credentials without writing anything (for ``audit verify``, which reads first);
        a failure is audited (``login.failed``) as in ``login``. Call ``record_login`` after."""
        with self.db.transaction() as s:
            u = repo.user_by_name(s, name)
            if u is None:
                dummy_verify(password)
            elif verify_password(u.password_hash, password) and u.active:
                return Actor(name=u.name, roles=repo.roles_of(s, u.id), user_id=u.id)
        self.login(name, password)  # audits the failure and raises
        raise AuthenticationError(f"login failed for {name}")  # pragma: no cover (login raised)

    def record_login(self, user: Actor) -> None:
        """The ``login`` entry of an ``authenticate``d user (part of logging in: no permission)."""
        with self.db.transaction() as s:
            self._audit(s, user.name, "login", f"user:{user.user_id}", {})

    def login(self, name: str, password: str) -> Actor:
        """Check credentials; audited either way (``login`` / ``login.failed``)."""
        with self.db.transaction() as s:
            u = repo.user_by_name(s, name)
            if u is None:
                dummy_verify(password)
                ok = False
            else:
                ok = verify_password(u.password_hash, password) and u.active
            if not ok:
                why = "unknown user" if u is None else ("disabled" if not u.active else "wrong password")
                self._audit(s, name if u is not None else "unknown", "login.failed", f"user:{u.id}" if u else "", {"reason": why})
        if not ok:
            raise AuthenticationError(f"login failed for {name}")
        with self.db.transaction() as s:
            u = repo.user_by_name(s, name)
            if needs_rehash(u.password_hash):
                u.password_hash = hash_password(password)
            roles = repo.roles_of(s, u.id)
            self._audit(s, u.name, "login", f"user:{u.id}", {})
            return Actor(name=u.name, roles=roles, user_id=u.id)
