"""Server-rendered pages for people: the studies list (more: the live study view, the submit form, login)."""

from __future__ import annotations

import html

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from sweep.catalog import list_studies
from sweep.service.security import require_token

router = APIRouter(tags=["pages"], include_in_schema=False)


@router.get("/", response_class=HTMLResponse, dependencies=[Depends(require_token)])
def index(request: Request) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(s.name)}</td><td>{s.state}</td><td>{s.finished}/{s.budget}</td>"
        f"<td>{'' if s.best_value is None else f'{s.best_value:.4f}'}</td></tr>"
        for s in list_studies(request.app.state.settings.storage_url)
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>sweep</title></head><body><h1>Studies</h1>"
        f"<table><tr><th>study</th><th>state</th><th>trials</th><th>best</th></tr>{rows}</table></body></html>"
    )
