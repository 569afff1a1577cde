"""Time as a dependency: the system clock in production, a controllable clock in tests."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class TestClock:
    """A clock that moves only when told to (``advance``, ``set``)."""

    __test__ = False  # not a pytest test class

    def __init__(self, start: datetime | None = None):
        start = start or datetime(2030, 1, 1, 9, 0, tzinfo=timezone.utc)
        if start.tzinfo is None:
            start = start.replace(tzinfo=timezone.utc)
        self._now = start.astimezone(timezone.utc)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        with self._lock:
            self._now = when.astimezone(timezone.utc)

    def advance(self, delta: timedelta | None = None, **kwargs) -> datetime:
        """Move forward by ``delta`` or ``timedelta(**kwargs)``; returns the new time."""
        with self._lock:
            self._now += delta if delta is not None else timedelta(**kwargs)
            return self._now
