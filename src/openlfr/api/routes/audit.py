"""The audit log: browse, verify, export (audit.read)."""

from __future__ import annotations

import io
from typing import Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from ...governance import queries
from ...web.deps import ctx, permit
from ...web.security import Principal
from ..schemas import ErrorOut, clean_text

router = APIRouter(prefix="/api", tags=["audit"])
ERR = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}


@router.get("/audit", responses=ERR, summary="Audit entries, newest first (audit.read)")
def audit_entries(request: Request, before: Optional[int] = Query(None, ge=1, le=2**62), limit: int = Query(100, ge=1, le=1000),
                  action: Optional[clean_text(100)] = Query(None), actor: Optional[clean_text(200)] = Query(None),
                  p: Principal = Depends(permit("audit.read"))) -> dict:
    return queries.audit_page(ctx(request).gov, p.actor, before, limit, action or None, actor or None)


@router.get("/audit/verify", responses=ERR, summary="Walk the hash chain (audit.read)")
def verify(request: Request, anchor: Optional[clean_text(100)] = Query(None, description="HASH@SEQ from an export: detects any rewrite up to it"),
           p: Principal = Depends(permit("audit.read"))) -> dict:
    r = ctx(request).gov.verify_audit(p.actor, anchor or None)
    return {"ok": r.ok, "entries": r.entries, "first_broken": r.first_broken, "reason": r.reason, "message": str(r),
            "anchor": str(r.anchor) if r.anchor else None, "notes": r.notes}


@router.get("/audit/export", response_class=Response, responses={**ERR, 200: {"content": {"application/x-ndjson": {}}}},
            summary="The whole log as JSON lines (audit.read; the export is itself audited)")
def export(request: Request, p: Principal = Depends(permit("audit.read"))) -> Response:
    buf = io.StringIO()
    n = ctx(request).gov.export_audit(p.actor, buf)
    headers = {"Content-Disposition": 'attachment; filename="openlfr-audit.jsonl"', "Cache-Control": "no-store"}
    if n.anchor is not None:  # keep it elsewhere: `openlfr audit verify --anchor` detects any rewrite up to it
        headers["X-Openlfr-Audit-Anchor"] = str(n.anchor)
    return Response(buf.getvalue(), media_type="application/x-ndjson", headers=headers)
