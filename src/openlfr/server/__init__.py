"""The app factory: the REST API, the live alert stream and the console in one FastAPI application.

``create_app(db_url, clock=None)``; served by ``openlfr serve`` (or ``uvicorn
openlfr.server:create_app --factory``). The API (``openlfr.api``) and the console
(``openlfr.console``) are mounted here side by side and never import each other; what they share
lies below both (``openlfr.web``). See docs/console.md.
"""

from .app import create_app

__all__ = ["create_app"]
