"""Audit trail export (engineer): verified first, in JSON or CSV, as :mod:`uns.audit.export` writes it."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Response

from mes_adapter.auth import Principal, Role
from mes_adapter.service_api import ServiceApi
from uns.audit.export import ExportFormat, export

from .deps import require, service
from .errors import AUTH_RESPONSES

router = APIRouter(prefix="/api", tags=["audit"], responses=AUTH_RESPONSES)
engineer = require(Role.ENGINEER, "exporting the audit trail")


@router.get("/audit/export", response_class=Response,
            responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
            summary="The audit trail with its verification verdict (engineer)")
async def audit_export(format: ExportFormat = Query(ExportFormat.JSON), svc: ServiceApi = Depends(service),
                       _: Principal = Depends(engineer)) -> Response:
    path, witness_path = svc.seal_audit()  # seal the tail so the export vouches for every record
    with tempfile.TemporaryDirectory(prefix="uns-audit-") as tmp:
        out = Path(tmp) / f"audit.{format.value}"
        await asyncio.to_thread(export, path, out, format, witness_path=witness_path)
        body = out.read_bytes()
    media = "application/json" if format is ExportFormat.JSON else "text/csv"
    return Response(body, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="audit.{format.value}"'})
