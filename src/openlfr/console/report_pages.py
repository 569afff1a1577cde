"""The console's deployment report: the CLI report's figures (with their 95% intervals), the
threshold and why, the deletion record, the charts (SVG, drawn on the server) and the PDF.

Everyone who may read deployments may read a deployment's report. Its alert figures come from
the audit log (``transparency.report.collect``), which the report reads with the auditor's
read-only rights when the viewer lacks them: the report holds counts, times and the
deployment's description, no subject's name, image or template. Reports are cached per
deployment and audit head, so a page and its charts draw them once.
"""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from pathlib import Path
from threading import Lock

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from ..governance.errors import NotFound
from ..governance.publication import records_version
from ..transparency import figures as honest
from ..transparency.public import READER
from ..transparency.report import CHART_TITLES, Report, charts, collect, duration, render_pdf, sections, when
from .views import page

router = APIRouter(include_in_schema=False)
_cache: OrderedDict = OrderedDict()
_lock = Lock()
KEEP = 16


def _report(pg, deployment_id: int) -> tuple[Report, dict]:
    """(the report, its SVG charts), from the cache while the audit log has not moved."""
    if not (1 <= deployment_id < 2**31):
        raise NotFound(f"no deployment {deployment_id}")
    pg.gov.get_deployment(pg.actor, deployment_id)  # deployment.read, and 404 for an unknown id
    key = (id(pg.gov), deployment_id, records_version(pg.gov))
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    r = collect(pg.gov, pg.actor if pg.can("audit.read") else READER, deployment_id)
    value = (r, charts(r, "svg"))
    with _lock:
        _cache[key] = value
        while len(_cache) > KEEP:
            _cache.popitem(last=False)
    return value


@router.get("/console/deployments/{deployment_id}/report", response_class=HTMLResponse)
async def report_page(request: Request, deployment_id: int):
    pg = await page(request, "deployment.read")
    r, svgs = await run_in_threadpool(_report, pg, deployment_id)
    fig = r.data["figures"]
    far = honest.false_alert_rate(fig["false_alerts"], fig["faces_seen"])
    prec = honest.alert_precision(fig["true_alerts"], fig["true_alerts"] + fig["operational_false_alerts"])
    return pg.render("report.html", r=r.data, sections=sections(r), far=far, prec=prec, when=when, duration=duration,
                     charts=[(k, CHART_TITLES.get(k, k)) for k in svgs], title=f"Report: deployment {deployment_id}")


@router.get("/console/deployments/{deployment_id}/report/charts/{key}.svg")
async def report_chart(request: Request, deployment_id: int, key: str):
    pg = await page(request, "deployment.read")
    _, svgs = await run_in_threadpool(_report, pg, deployment_id)
    if key not in svgs:
        raise NotFound(f"no chart {key}")
    return Response(svgs[key], media_type="image/svg+xml", headers={"Cache-Control": "private, no-store"})


@router.get("/console/deployments/{deployment_id}/report.pdf")
async def report_pdf(request: Request, deployment_id: int):
    pg = await page(request, "deployment.read")
    r, _ = await run_in_threadpool(_report, pg, deployment_id)

    def make() -> bytes:
        with tempfile.TemporaryDirectory(prefix="openlfr-report-") as tmp:
            return render_pdf(r, Path(tmp) / "report.pdf").read_bytes()

    data = await run_in_threadpool(make)
    return Response(data, media_type="application/pdf", headers={
        "Cache-Control": "private, no-store",
        "Content-Disposition": f'attachment; filename="openlfr-deployment-{deployment_id}-report.pdf"'})
