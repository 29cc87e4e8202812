"""Server-rendered pages for people: the studies list with the submit form (`/`), a study's live view
(`/studies/{name}`, its figures from `/studies/{name}/figures.json`), and `/login` for a server with a token.

The pages are Jinja2 templates (autoescaped: study names, parameters and messages come from users) and a little
JavaScript (`static/app.js`) that reads the JSON API, redraws plotly figures in place with `Plotly.react` and stops
asking once a study cannot change any more. plotly.js is served from the installed plotly package: no CDN, no
front-end build, nothing fetched from another host.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections import OrderedDict
from pathlib import Path
from typing import Any

import optuna
import plotly.io
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from record import best_trial, read_study
from reports.figures import collect_history, collect_learning_curves, plot_history, plot_learning_curves
from reports.importance import collect_importances, importance_caveats, importance_problem, plot_importances
from sweep.catalog import StudySummary, summarize
from sweep.errors import NoSuchStudy, StorageLost, SweepError
from sweep.service.api import current_studies
from sweep.service.security import (
    COOKIE,
    SESSION_HOURS,
    end_session,
    is_token,
    new_session,
    presented_token,
    require_token,
    token_matches,
)
from sweep.service.settings import ServiceSettings, settings_of
from sweep.storage import load_study
from sweep.store_checks import mask, open_error

HERE = Path(__file__).parent
TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
# The files under /static: our own, and plotly.js from the installed plotly package (what `sweep report` embeds).
JS, CSS = "text/javascript; charset=utf-8", "text/css; charset=utf-8"
STATIC: dict[str, tuple[Path, str]] = {
    "app.js": (HERE / "static" / "app.js", JS),
    "style.css": (HERE / "static" / "style.css", CSS),
    "plotly.min.js": (Path(plotly.__file__).parent / "package_data" / "plotly.min.js", JS),
}

# No inline script and nothing from another host may run on our pages, whatever a study name holds (plotly sets
# inline styles on its figures, hence 'unsafe-inline' for styles only).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(tags=["pages"], include_in_schema=False)


def _settings(request: Request) -> ServiceSettings:
    return settings_of(request)


def _logged_in(request: Request) -> bool:
    return token_matches(_settings(request).token, presented_token(request))


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    settings = _settings(request)
    body = TEMPLATES.get_template(template).render(
        refresh_seconds=settings.refresh_seconds,
        has_token=settings.token is not None,
        logged_in=settings.token is not None and _logged_in(request),
        data_roots=bool(settings.data_roots),
        **context,
    )
    return HTMLResponse(body, status_code=status_code, headers=PAGE_HEADERS)


def _to_login() -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


def _shown(value: float | None) -> str:
    """A number as the page's script writes it (`fmt` in static/app.js): 4 decimals, exponent when tiny or huge."""
    if value is None:
        return "–"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2e}" if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5) else f"{value:.4f}"


def study_rows(summaries: list[StudySummary]) -> list[dict[str, Any]]:
    """The studies list as the page first shows it, before (or without) its script."""
    return [
        {
            "name": s.name,
            "url": "/studies/" + urllib.parse.quote(s.name, safe=""),
            "state": s.state,
            "finished": s.finished,
            "budget": s.budget,
            "share": f"{100 * min(1.0, s.finished / s.budget) if s.budget else 0.0:.1f}",
            "best": "–" if s.best_value is None else f"{_shown(s.best_value)} {s.metric_label or ''}".strip(),
            "running": s.running,
            "workers": ", ".join(f"{w} (process gone)" if w in s.gone_workers else w for w in s.workers) or "–",
            "priority": s.priority,
            "submitted": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(s.submitted_at)) if s.submitted_at else "–",
        }
        for s in summaries
    ]


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> Response:
    """The studies list (drawn here, then refreshed from /api/studies by the script) and the submit form."""
    if not _logged_in(request):
        return _to_login()
    try:
        rows, problem = study_rows(current_studies(request)), ""
    except (SweepError, SQLAlchemyError) as exc:  # the store unreachable: the page still opens, with the form
        url = _settings(request).storage_url
        lines = (exc if isinstance(exc, SweepError) else open_error(url, exc)).lines()
        rows, problem = [], "could not read the studies: " + " ".join(mask(line, url) for line in lines)
    return _page(request, "index.html", studies=rows, list_error=problem)


@router.get("/studies/{name}", response_class=HTMLResponse)
def study_page(name: str, request: Request) -> Response:
    """One study's live view: its summary, figures and trials, refreshed while it is queued or running."""
    if not _logged_in(request):
        return _to_login()
    try:
        load_study(name, _settings(request).storage_url)
    except SweepError as exc:  # no such study, no store yet, the store unreachable: said on a page, not as JSON
        code = 404 if isinstance(exc, NoSuchStudy) else 503 if isinstance(exc, StorageLost) else 400
        message = "\n".join(mask(line, _settings(request).storage_url) for line in exc.lines())
        return _page(request, "missing.html", status_code=code, name=name, message=message)
    return _page(request, "study.html", name=name, quoted=urllib.parse.quote(name, safe=""))


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    if _settings(request).token is None or _logged_in(request):
        return RedirectResponse("/", status_code=303)
    return _page(request, "login.html", error=None)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, token: str = Form("")) -> Response:
    """Check the token (constant time) and start a session: an HttpOnly, SameSite=Strict cookie signed with the token
    (not the token itself) for the page's requests, good for 12 hours."""
    expected = _settings(request).token
    if expected is None:
        return RedirectResponse("/", status_code=303)
    token = token.strip()  # as the token file is read: a pasted or `curl -d token@file` newline is no part of it
    if not token or not is_token(expected, token):  # the token itself: a cookie is no way in here
        error = "that is not the token this server was started with"
        return _page(request, "login.html", status_code=401, error=error)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, new_session(expected), httponly=True, samesite="strict", max_age=SESSION_HOURS * 3600,
                        secure=request.url.scheme == "https", path="/")  # fmt: skip
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """End the page's session: the cookie is cleared, and refused from now on even where a copy of it is kept."""
    expected, cookie = _settings(request).token, request.cookies.get(COOKIE)
    if expected is not None and cookie:
        end_session(expected, cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/static/{filename}")
def static(filename: str) -> Response:
    """The page's own script and style sheet and plotly.js: a fixed list, nothing else on disk is reachable."""
    found = STATIC.get(filename)
    if found is None:
        return JSONResponse({"detail": f"no static file {filename!r}", "errors": []}, status_code=404)
    path, media_type = found
    # plotly.js changes only with the installed plotly; our own files may change with an upgrade of sweep
    cache = "public, max-age=604800, immutable" if filename == "plotly.min.js" else "no-cache"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": cache})


# --- the live view's figures ------------------------------------------------------------------------------------

_IMPORTANCE_CACHE: OrderedDict[tuple[str, str, int, int], tuple[Any, str | None]] = OrderedDict()
_IMPORTANCE_LOCK = threading.Lock()


def _figure(fig: Any) -> Any:
    return json.loads(plotly.io.to_json(fig, validate=False))


def _importance(study: optuna.Study, url: str) -> tuple[Any, str | None]:
    """The importance figure (or the reason there is none), computed once per set of finished trials."""
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    key = (url, study.study_name, len(finished), max((t.number for t in finished), default=-1))
    with _IMPORTANCE_LOCK:
        if key in _IMPORTANCE_CACHE:
            _IMPORTANCE_CACHE.move_to_end(key)
            return _IMPORTANCE_CACHE[key]
    problem = importance_problem(study)
    if problem is not None:
        result: tuple[Any, str | None] = (None, problem)
    else:
        data = collect_importances(study)
        # what the ranking does not show, as under the report's figure (a 3-trial ranking read as settled)
        lines = [f"{k} importance could not be computed: {v}" for k, v in data.errors.items()]
        note = " ".join(lines + importance_caveats(len(finished), data)) or None
        result = (_figure(plot_importances(data)), note) if data.importances else (None, note)
    with _IMPORTANCE_LOCK:
        _IMPORTANCE_CACHE[key] = result
        while len(_IMPORTANCE_CACHE) > 64:
            _IMPORTANCE_CACHE.popitem(last=False)
    return result


def study_figures(study: optuna.Study, url: str) -> dict[str, Any]:
    """The live view's figures as plotly JSON, built by the functions `sweep report` uses."""
    metric = read_study(study).metric_label or "value"
    summary = summarize(study)
    curves = collect_learning_curves(study, best_trial(study))
    importance, note = _importance(study, url)
    return {
        "state": summary.state,
        "finished": summary.finished,
        "history": _figure(plot_history(collect_history(study), metric)) if summary.finished else None,
        "learning_curves": _figure(plot_learning_curves(curves, metric)) if curves else None,
        "importance": importance,
        "importance_note": note,
    }


@router.get("/studies/{name}/figures.json", dependencies=[Depends(require_token)])
def figures(name: str, request: Request) -> dict[str, Any]:
    """Plotly figure JSON for the live view: optimisation history with the best so far, learning curves, importance
    (null with `importance_note` saying why while there are too few trials)."""
    url = _settings(request).storage_url
    return study_figures(load_study(name, url), url)
