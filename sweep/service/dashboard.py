"""optuna-dashboard over the same store, at `/dashboard`, behind the server's token.

optuna-dashboard 0.21 cannot be told it lives under a prefix: its page loads `/static/bundle.js` and its JavaScript
fetches `/api/...` from the site's root (its API client's base URL is fixed to ""), which would collide with our own
`/api`. Its client-side routes already live under `/dashboard/...`. So this wrapper:
- answers `/dashboard` and `/dashboard/<client route>` with the dashboard's own index.html, its script tag pointed at
  `/dashboard/static/bundle.js`, preceded by a small script that sends the page's `/api/...` requests to
  `/dashboard/api/...` (a file, so the dashboard's Content-Security-Policy without inline scripts still holds);
- hands `/dashboard/api/...`, `/dashboard/static/...` and its favicon to the dashboard's WSGI app without the prefix
  (the page links the favicon there, so the browser does not ask the site's root for one), and its
  root-level links (`/csv/<study>`, `/artifacts/...`, which do not collide with ours) as they are;
- refuses every one of these requests without the token (401 JSON), as the rest of the service does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sweep.errors import SweepError
from sweep.service.security import presented_token, token_matches, unauthorized, wants_page
from sweep.store_checks import mask

PREFIX = "/dashboard"
SHIM = f"{PREFIX}/static/sweep-prefix.js"
# Routed to the dashboard's WSGI app: (path prefix, strip /dashboard first)
PASSED = ((f"{PREFIX}/api/", True), (f"{PREFIX}/static/", True), (f"{PREFIX}/favicon.ico", True), ("/csv/", False),
          ("/artifacts/", False))  # fmt: skip
SHIM_JS = """// sweep: optuna-dashboard is mounted under /dashboard; send its API requests there.
(function () {
  var original = window.fetch.bind(window);
  window.fetch = function (input, init) {
    if (typeof input === "string" && input.indexOf("/api/") === 0) { input = "/dashboard" + input; }
    return original(input, init);
  };
})();
"""
CSP = ("default-src 'self'; img-src 'self' data: blob:; frame-src 'self'; object-src 'none'; connect-src 'self'; "
       "style-src 'self' data: 'unsafe-inline'; script-src 'self' 'unsafe-eval'")  # optuna-dashboard's own  # fmt: skip


def index_html() -> str:
    """The dashboard's page, loading its bundle (and our fetch shim first) under the prefix."""
    import optuna_dashboard

    html = (Path(optuna_dashboard.__file__).parent / "index.html").read_text(encoding="utf-8")
    tag = '<script defer src="/static/bundle.js"></script>'
    if tag not in html:  # a newer optuna-dashboard: its page is served unchanged (and may not find its API)
        return html
    return html.replace(tag, f'<link rel="icon" href="{PREFIX}/favicon.ico"><script defer src="{SHIM}"></script>'
                             f'<script defer src="{PREFIX}/static/bundle.js"></script>')  # fmt: skip


class DashboardMount:
    """ASGI middleware: the dashboard's paths go to optuna-dashboard (token checked), everything else to `app`."""

    def __init__(self, app: ASGIApp, storage_url: str, token: str | None) -> None:
        self.app = app
        self.storage_url = storage_url
        self.token = token
        self._wsgi: Any = None

    def wsgi(self) -> Any:
        if self._wsgi is None:  # built on first use: importing optuna-dashboard costs a second
            from a2wsgi import WSGIMiddleware
            from optuna_dashboard import wsgi

            from sweep.storage import open_storage

            self._wsgi = WSGIMiddleware(wsgi(open_storage(self.storage_url, read_only=True)))  # type: ignore[arg-type]
        return self._wsgi

    def route(self, path: str) -> tuple[bool, str] | None:
        """(handled here, the path the dashboard sees), or None for the service's own routes."""
        for prefix, strip in PASSED:
            if path.startswith(prefix):
                return True, path[len(PREFIX):] if strip else path
        if path == PREFIX or path.startswith(PREFIX + "/"):
            return True, ""
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        routed = self.route(scope["path"])
        if routed is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        response: Response | None = None
        if not token_matches(self.token, presented := presented_token(request)) and wants_page(request):
            response = RedirectResponse("/login", status_code=303)  # the dashboard in a browser: the login form first
        elif not token_matches(self.token, presented):
            refused = unauthorized(presented)
            response = JSONResponse({"detail": refused, "errors": [{"field": "", "message": refused}]},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        elif scope["path"] == SHIM:
            response = Response(SHIM_JS, media_type="text/javascript")
        elif not routed[1]:
            response = HTMLResponse(index_html(), headers={"Content-Security-Policy": CSP})
        if response is not None:
            await response(scope, receive, send)
            return
        try:
            app = self.wsgi()
        except SweepError as exc:  # the store cannot be opened: say why, as the API does (password masked)
            lines = [mask(line, self.storage_url) for line in exc.lines()]
            problems = [{"field": w, "message": mask(m, self.storage_url)} for w, m in exc.problems]
            await JSONResponse({"detail": "\n".join(lines), "errors": problems}, status_code=503)(scope, receive, send)
            return
        inner = dict(scope, path=routed[1], raw_path=routed[1].encode(), root_path="")
        await app(inner, receive, send)
