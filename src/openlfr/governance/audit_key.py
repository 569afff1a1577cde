"""The audit key: the secret that keys the audit chain's HMACs, kept outside the database.

Someone who can write the database but does not hold this key cannot append an entry, edit
one and recompute the chain, or cut the tail and move the head back, without ``audit verify``
noticing. Where it comes from, first match wins:

1. ``$OPENLFR_AUDIT_KEY``: the key itself (at least 32 characters; e.g. ``openssl rand -hex 32``);
2. ``$OPENLFR_AUDIT_KEY_FILE``: a file holding it (created, 0600, when it does not exist);
3. ``$XDG_CONFIG_HOME/openlfr/audit.key`` (else ``~/.config/openlfr/audit.key``): created on
   first use, 0600 in a 0700 folder: beside, not inside, the data directory with the database.

Every process writing to one database (console, CLI, camera workers with database access)
must use the same key: the database records the key's id (``key_id``, an HMAC of a constant,
never the key) and refuses to append under another key. A key file readable by group or
others is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import GovernanceError

KEY_ENV = "OPENLFR_AUDIT_KEY"
KEY_FILE_ENV = "OPENLFR_AUDIT_KEY_FILE"
MIN_KEY_CHARS = 32


class AuditKeyError(GovernanceError):
    """The audit key is missing, unreadable, too short, or not the one this database uses."""


@dataclass(frozen=True)
class AuditKey:
    secret: bytes
    source: str  # where it came from (for messages; never the key)

    @property
    def key_id(self) -> str:
        return hmac.new(self.secret, b"openlfr audit key id", hashlib.sha256).hexdigest()[:16]

    def mac(self, message: bytes) -> str:
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"AuditKey(id={self.key_id}, source={self.source!r})"


def default_key_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "openlfr" / "audit.key"


def _read_file(path: Path) -> bytes:
    try:
        st = path.stat()
    except OSError as e:
        raise AuditKeyError(f"cannot read the audit key file {path}: {e.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuditKeyError(f"the audit key file {path} is open to group or others: chmod 600 {path}")
    text = path.read_text(encoding="utf-8").strip()
    if len(text) < MIN_KEY_CHARS:
        raise AuditKeyError(f"the audit key in {path} is shorter than {MIN_KEY_CHARS} characters")
    return text.encode("utf-8")


def _create_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def load_key(create: bool = True) -> AuditKey:
    """The audit key from the environment or its file (see the module docstring)."""
    value = os.environ.get(KEY_ENV)
    if value:
        if len(value.strip()) < MIN_KEY_CHARS:
            raise AuditKeyError(f"${KEY_ENV} is shorter than {MIN_KEY_CHARS} characters")
        return AuditKey(value.strip().encode("utf-8"), f"${KEY_ENV}")
    path = Path(os.environ[KEY_FILE_ENV]).expanduser() if os.environ.get(KEY_FILE_ENV) else default_key_file()
    if not path.exists():
        if not create:
            raise AuditKeyError(f"no audit key: {path} does not exist (set ${KEY_FILE_ENV} or ${KEY_ENV})")
        _create_file(path)
    return AuditKey(_read_file(path), str(path))
