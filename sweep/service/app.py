"""`create_app(settings)`: the API under `/api`, the pages at `/`, optuna-dashboard at `/dashboard`; every error
answered as JSON with the same lines the command line prints."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sweep.errors import NoSuchStudy, StorageLost, SweepError
from sweep.service.settings import ServiceSettings
from sweep.store_checks import mask


def error_body(problems: list[tuple[str, str]], lines: list[str]) -> dict[str, object]:
    """The JSON of an error: `detail` (the lines joined, as the command line prints them) and each problem."""
    return {"detail": "\n".join(lines), "errors": [{"field": where, "message": msg} for where, msg in problems]}


def create_app(settings: ServiceSettings) -> FastAPI:
    from sweep.service import api, pages

    app = FastAPI(
        title="sweep",
        summary="Hyperparameter sweeps for fine-tuning text encoders: submit, follow, stop and export studies.",
        version="1",
    )
    app.state.settings = settings

    @app.exception_handler(SweepError)
    async def sweep_error(request: Request, exc: SweepError) -> JSONResponse:
        code = 503 if isinstance(exc, StorageLost) else 404 if isinstance(exc, NoSuchStudy) else 400
        lines = [mask(line, settings.storage_url) for line in exc.lines()]
        problems = [(where, mask(msg, settings.storage_url)) for where, msg in exc.problems]
        return JSONResponse(error_body(problems, lines), status_code=code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse(error_body([("", detail)], [detail]), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [(".".join(str(p) for p in e.get("loc", ())), str(e.get("msg", "invalid"))) for e in exc.errors()]
        return JSONResponse(error_body(problems, [f"{w}: {m}" for w, m in problems]), status_code=422)

    app.include_router(api.router)
    app.include_router(pages.router)
    return app
