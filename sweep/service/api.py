"""The JSON API under `/api`: the studies list and one study (more routes: submit, stop, resume, report, export)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from sweep.catalog import list_studies, summarize, trial_summary
from sweep.service.security import require_token
from sweep.storage import load_study

router = APIRouter(prefix="/api", dependencies=[Depends(require_token)], tags=["studies"])


def _url(request: Request) -> str:
    url: str = request.app.state.settings.storage_url
    return url


@router.get("/studies", summary="Every study in the store: state, progress, best value, workers")
def studies(request: Request) -> list[dict[str, Any]]:
    return [s.as_dict() for s in list_studies(_url(request))]


@router.get("/studies/{name}", summary="One study: its summary, trials (with per-evaluation values), best trial")
def study(name: str, request: Request) -> dict[str, Any]:
    loaded = load_study(name, _url(request))
    summary = summarize(loaded)
    trials = [trial_summary(t) for t in loaded.get_trials(deepcopy=False)]
    best = next((t for t in trials if t["number"] == summary.best_trial), None)
    return {"study": summary.as_dict(), "trials": trials, "best_trial": best}
