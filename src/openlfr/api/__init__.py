"""The REST API, the live alert stream and the console (FastAPI): ``create_app(db_url, clock=None)``.

Served by ``openlfr serve``; camera workers post alerts with a worker token
(``openlfr.worker.client``). See docs/console.md.
"""

from .app import create_app

__all__ = ["create_app"]
