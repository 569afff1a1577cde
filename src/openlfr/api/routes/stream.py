"""The live stream (Server-Sent Events): new alerts, their updates and decisions, deployment changes.

``GET /api/stream`` sends, as they happen (``id:`` is the audit log's seq, so a reconnecting
EventSource resumes after the last event it saw, via ``Last-Event-ID``, and misses nothing):

- ``alert``: a new alert (the same fields as ``GET /api/alerts/{id}``), for alert.read holders;
- ``alert_update``: an alert got a better shot, an adjudication or an outcome (alert.read);
- ``deployment``: a deployment was planned, authorised, started, stopped or ended ({"id", "action"});
- ``refresh``: alerts were erased or purged: reload the list;
- ``camera``: a camera of an active deployment changed (state, counts, warning; the fields of
  ``GET /api/deployments/{id}/cameras``), and ``camera_warning`` when one has been down too
  long or is back (``{"deployment_id", "camera", "action"}``: ``camera.down`` / ``camera.restored``).

The stream checks every few seconds that the caller's session or token is still valid (it ends
on logout, revocation or a disabled account) and ends after ``max_s`` seconds (the browser's
EventSource reconnects by itself and resumes).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Optional

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from ...governance.cameras import CameraWatch
from ...governance.errors import GovernanceError
from ...governance import queries
from ...web.deps import ctx, permit
from ...web.security import Principal
from ..schemas import ErrorOut

router = APIRouter(prefix="/api", tags=["stream"])
HEARTBEAT_S = 15.0
REVALIDATE_S = 5.0


def _sse(event: str, data: dict, seq: int | None = None) -> str:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _payloads(gov, actor, changes) -> list[str]:
    can_alerts = actor.can("alert.read")
    out = []
    for seq, action, target in changes:
        kind, _, ident = target.partition(":")
        if action in ("alert.create", "alert.update", "alert.adjudicate", "alert.outcome"):
            if not can_alerts or kind != "alert" or not ident.isdigit():
                continue
            try:
                a = queries.alert_detail(gov, actor, int(ident))
            except GovernanceError:  # erased or purged since
                continue
            out.append(_sse("alert" if action == "alert.create" else "alert_update", a, seq))
        elif action.startswith("camera.") and kind == "deployment" and ident.isdigit():
            out.append(_sse("camera_warning", {"deployment_id": int(ident), "action": action}, seq))
        elif action.startswith("deployment.") and kind == "deployment" and ident.isdigit():
            out.append(_sse("deployment", {"id": int(ident), "action": action}, seq))
        elif action == "snapshot.delete":
            continue
        elif can_alerts:  # subject.erase, purge
            out.append(_sse("refresh", {"action": action}, seq))
    return out


@router.get("/stream", responses={200: {"content": {"text/event-stream": {}}}, 401: {"model": ErrorOut}, 403: {"model": ErrorOut}},
            summary="Live events (Server-Sent Events): alerts for alert.read holders, deployment changes for all")
async def stream(
    request: Request,
    after: Optional[int] = Query(None, ge=0, le=2**62, description="Send what happened after this audit seq (default: from now)"),
    max_s: float = Query(600.0, ge=0, le=3600, description="End the stream after this many seconds (EventSource reconnects)"),
    last_event_id: Optional[str] = Header(None, max_length=30),
    p: Principal = Depends(permit("deployment.read")),
) -> StreamingResponse:
    c = ctx(request)
    gov = c.gov
    start = after
    if last_event_id and last_event_id.strip().isdigit() and len(last_event_id.strip()) < 19:
        start = int(last_event_id.strip())
    if start is None:
        start = await asyncio.to_thread(queries.head_seq, gov)

    async def events():
        seq = start
        yield f"retry: 2000\n: openlfr live stream from seq {seq}\n\n"
        waiter = c.notifier.register()
        cams = CameraWatch(gov)
        await asyncio.to_thread(cams.poll)  # the cameras as they are now: only changes are sent
        t0 = last_beat = last_check = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if now - t0 >= max_s:
                    break
                if now - last_check >= REVALIDATE_S:
                    last_check = now
                    if not await asyncio.to_thread(c.tokens.still_valid, p):
                        yield _sse("logout", {"detail": "the session or token is no longer valid"})
                        break
                _, ev = waiter
                ev.clear()  # a poke from here on wakes the wait below
                changes, seq_next = await asyncio.to_thread(queries.changes_since, gov, seq)
                if changes:
                    for chunk in await asyncio.to_thread(_payloads, gov, p.actor, changes):
                        yield chunk
                    last_beat = time.monotonic()
                seq = seq_next
                for view in await asyncio.to_thread(cams.poll):
                    yield _sse("camera", view)
                if time.monotonic() - last_beat >= HEARTBEAT_S:
                    yield ": heartbeat\n\n"
                    last_beat = time.monotonic()
                if await request.is_disconnected():
                    break
                try:
                    await asyncio.wait_for(ev.wait(), timeout=max(0.01, min(c.stream_poll_s, max_s - (time.monotonic() - t0))))
                except asyncio.TimeoutError:
                    pass
        finally:
            c.notifier.unregister(waiter)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
