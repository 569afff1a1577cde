"""The REST API as a part of the application: its routers, its tags and description in the
OpenAPI document, and that document's 422 responses as the server sends them.

``mount_api(app)`` adds the routers to the application that ``openlfr.server.create_app``
builds; the console is mounted beside it there, and neither imports the other.
"""

from __future__ import annotations

import json

from fastapi import FastAPI

DESCRIPTION = ("Accountable live facial recognition: the operator console's API. Authenticate with "
               "`POST /api/auth/token` and send `Authorization: Bearer TOKEN`; camera workers use worker tokens. "
               "Every action is checked against the caller's roles and written to the audit log.")

TAGS = [
    {"name": "auth", "description": "Bearer tokens (from a user name and password), worker tokens, revocation, who am I"},
    {"name": "users", "description": "Users and roles (administrator); retention and purge"},
    {"name": "watchlists", "description": "Watchlists, subjects, quality-checked enrolment, expiry, erasure"},
    {"name": "deployments", "description": "Plan, authorise, start, stop; the dashboard figures; the report"},
    {"name": "alerts", "description": "Alerts, their images, adjudication and outcomes"},
    {"name": "stream", "description": "Live events (Server-Sent Events)"},
    {"name": "audit", "description": "The hash-chained audit log"},
    {"name": "workers", "description": "Camera workers (openlfr run --server): worker token only"},
]


def describe_validation_errors(spec: dict) -> dict:
    """Point every 422 response at ``ValidationErrorOut`` (FastAPI's default says ``detail`` is a
    list, but ``openlfr.server.errors`` answers ``{"detail": "...", "error": "validation", "errors": [...]}``)."""
    from .schemas import ValidationErrorOut

    comps = spec.setdefault("components", {}).setdefault("schemas", {})
    defs = ValidationErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    comps.update(defs.pop("$defs", {}))
    comps["ValidationErrorOut"] = defs
    ref = {"$ref": "#/components/schemas/ValidationErrorOut"}
    for ops in spec.get("paths", {}).values():
        for op in ops.values():
            r = op.get("responses", {}).get("422") if isinstance(op, dict) else None
            if r is None:
                continue
            schema = r.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref", "").endswith(("/HTTPValidationError", "/ErrorOut")) or not schema:
                r["content"] = {"application/json": {"schema": ref}}
                r["description"] = "Invalid request: what is wrong, in words (detail) and by field (errors)"
    text = json.dumps(spec.get("paths", {}))
    for name in ("HTTPValidationError", "ValidationError"):
        if f"/{name}\"" not in text:
            comps.pop(name, None)
    return spec


def mount_api(app: FastAPI) -> None:
    """The API's routers: REST under /api, the live stream, the workers' endpoints."""
    from .routes import alerts, audit, auth, cameras, deployments, publication, stream, users, watchlists, worker

    for r in (auth, users, watchlists, deployments, alerts, stream, audit, worker, cameras, publication):
        app.include_router(r.router)
