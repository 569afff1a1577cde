"""The public transparency pages: ``/public`` (HTML), ``/public/deployments.json`` and ``.csv``.

No login: anyone may read, for each ended deployment an administrator published, when and
where it ran, why, the authorising officer's rank, the watchlist's size, faces seen, alerts,
true and false alerts, engagements and outcomes, and the two published rates with their 95%
intervals (``openlfr.governance.publication``). Never a name, an image or a template.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..transparency.public import PUBLIC_FIELDS, public_records
from ..transparency.figures import MIN_FACES
from .views import Page

router = APIRouter(include_in_schema=False)
PUBLIC_HEADERS = {"Cache-Control": "public, max-age=60", "Access-Control-Allow-Origin": "*"}


async def _records(request: Request) -> list[dict]:
    return await run_in_threadpool(public_records, request.app.state.ctx.gov)


@router.get("/public", response_class=HTMLResponse)
async def public_page(request: Request):
    rows = await _records(request)
    pg = Page(request, None)
    resp = pg.render("public.html", records=rows, min_faces=MIN_FACES, title="Public records of live facial recognition")
    resp.headers["Cache-Control"] = PUBLIC_HEADERS["Cache-Control"]
    return resp


@router.get("/public/deployments.json")
async def public_json(request: Request):
    rows = await _records(request)
    return JSONResponse({"generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "fields": list(PUBLIC_FIELDS),
                         "deployments": rows}, headers=PUBLIC_HEADERS)


@router.get("/public/deployments.csv")
async def public_csv(request: Request):
    rows = await _records(request)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(PUBLIC_FIELDS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in PUBLIC_FIELDS})
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={**PUBLIC_HEADERS, "Content-Disposition": 'attachment; filename="openlfr-deployments.csv"'})
