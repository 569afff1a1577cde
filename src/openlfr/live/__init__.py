"""Live recognition: sources, tracking, best shots, shared embedding, alerts, the run loop.

``LiveRunner(RunConfig(...))`` is the entry point (``openlfr run``); ``openlfr demo`` runs a
self-contained scenario (``live.demo``).
"""

from .config import RunConfig

__all__ = ["RunConfig"]
