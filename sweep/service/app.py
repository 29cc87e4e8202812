"""`create_app(settings)`: the API under `/api`, the pages at `/`, optuna-dashboard at `/dashboard`; every error
answered as JSON with the same lines the command line prints."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sweep.errors import NoSuchStudy, StorageLost, SweepError
from sweep.service.dashboard import DashboardMount
from sweep.service.security import require_token, wants_page
from sweep.service.settings import ServiceSettings
from sweep.service.submissions import Conflict, TooLarge
from sweep.store_checks import mask

log = logging.getLogger("sweep.service")
SCHEMA_URL = "/docs/openapi.json"  # the OpenAPI schema; /docs is its page


REQUEST_PARTS = frozenset({"body", "query", "path", "header", "cookie"})  # FastAPI's first step of an error's loc


def _validation_problem(error: Any) -> tuple[str, str]:
    """(field, message) of one FastAPI validation error: the field as the form names it ("priority", not
    "body.priority") and the value sent, where it is short and not a secret."""
    loc = [str(p) for p in error.get("loc", ())]
    where = ".".join(loc[1:] if len(loc) > 1 and loc[0] in REQUEST_PARTS else loc) or "request"
    message = str(error.get("msg", "invalid"))
    sent = error.get("input")
    secret = any(word in where.lower() for word in ("token", "password", "secret", "url", "authorization"))
    if isinstance(sent, (str, int, float)) and not isinstance(sent, bool) and len(str(sent)) <= 40 and not secret:
        message += f" (got {sent!r})"
    return where, message


def error_body(problems: list[tuple[str, str]], lines: list[str]) -> dict[str, object]:
    """The JSON of an error: `detail` (the lines joined, as the command line prints them) and each problem."""
    return {"detail": "\n".join(lines), "errors": [{"field": where, "message": msg} for where, msg in problems]}


def create_app(settings: ServiceSettings) -> FastAPI:
    from sweep.service import api, pages

    app = FastAPI(
        title="sweep",
        summary="Hyperparameter sweeps for fine-tuning text encoders: submit, follow, stop and export studies.",
        version="1",
        docs_url=None,  # served below, behind the token like every other route
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.importance_cache = {}
    app.state.store_ready = False

    @app.exception_handler(SweepError)
    async def sweep_error(request: Request, exc: SweepError) -> JSONResponse:
        code = (503 if isinstance(exc, StorageLost) else 404 if isinstance(exc, NoSuchStudy)
                else 409 if isinstance(exc, Conflict) else 413 if isinstance(exc, TooLarge) else 400)  # fmt: skip
        lines = [mask(line, settings.storage_url) for line in exc.lines()]
        problems = [(where, mask(msg, settings.storage_url)) for where, msg in exc.problems]
        return JSONResponse(error_body(problems, lines), status_code=code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 401 and wants_page(request):  # /docs in a browser: the login form, as / does
            return RedirectResponse("/login", status_code=303)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse(error_body([("", detail)], [detail]), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(SQLAlchemyError)
    async def store_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        """The store went away or refused: 503, saying so as the command line does (the password masked)."""
        from sweep.store_checks import open_error

        return await sweep_error(request, StorageLost(open_error(settings.storage_url, exc).problems))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s: %s", request.method, request.url.path,
                  mask(f"{type(exc).__name__}: {exc}", settings.storage_url))  # fmt: skip
        detail = f"internal error ({type(exc).__name__}): the server's log has the details"
        return JSONResponse(error_body([("", detail)], [detail]), status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_validation_problem(e) for e in exc.errors()]
        return JSONResponse(error_body(problems, [f"{w}: {m}" for w, m in problems]), status_code=422)

    @app.get(SCHEMA_URL, include_in_schema=False, dependencies=[Depends(require_token)])
    def openapi_schema() -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(require_token)])
    def docs() -> HTMLResponse:
        from sweep.service.docs import render_docs

        return HTMLResponse(render_docs(app.openapi(), SCHEMA_URL))

    app.include_router(api.router)
    app.include_router(pages.router)
    app.add_middleware(BodyLimit, limit=2 * settings.max_upload_bytes + MULTIPART_SLACK)
    app.add_middleware(DashboardMount, storage_url=settings.storage_url, token=settings.token)
    return app


MULTIPART_SLACK = 2 * 1024 * 1024  # the spec and the form's other fields, on top of two data files


class _OverLimit(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is answered 413 (JSON) without being read further, whether
    it announces its length or not (the submit route also limits each file)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = (f"the request is over this server's limit of {self.limit} bytes: two data files of sweep serve "
                  "--max-upload-mb each, and 2 MB for the spec and the form's other fields")  # fmt: skip
        refuse = JSONResponse(error_body([("", detail)], [detail]), status_code=413)
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await refuse(scope, receive, send)
            return
        seen, over, started, answered = 0, False, False, False

        async def counted() -> Message:
            nonlocal seen, over
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                over = True
                raise _OverLimit
            return message

        async def watched(message: Message) -> None:
            nonlocal started, answered
            if over:  # the route turned the interrupted body into an answer of its own (a parse error): ours instead
                if not answered and message["type"] == "http.response.start":
                    answered = True
                    await refuse(scope, receive, send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _OverLimit:
            if not started and not answered:
                await refuse(scope, receive, send)
