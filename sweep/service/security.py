"""The token rule: once the server has a token, every request needs it (API, pages and the mounted dashboard), as
`Authorization: Bearer TOKEN` or, for the page, the session cookie that `/login` sets. Compared in constant time,
never logged. Without a token (only allowed on a loopback address) everything is open to the local machine.

The cookie is not the token: it is a session, `expiry.nonce.signature` with an HMAC-SHA256 of `expiry.nonce` keyed by
the token and a key drawn when the server starts, good for `SESSION_HOURS`. A browser (its storage, a copied cookie)
never holds the token the API scripts use; a session ends by itself, at logout, and when the token changes or the
server restarts."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Literal

from fastapi import HTTPException, Request, status

COOKIE = "sweep_session"  # a signed session (named sweep_token before 2026-12-04; a restart ends sessions anyway)


SESSION_HOURS = 12


def new_session(token: str, *, now: float | None = None) -> str:
    """A page session's cookie value for a login with `token`: it expires after SESSION_HOURS."""
    payload = f"{int((time.time() if now is None else now) + SESSION_HOURS * 3600)}.{secrets.token_urlsafe(16)}"
    return f"{payload}.{_sign(token, payload)}"


# Drawn when the server starts: a session lives no longer than its server process, so a logged-out cookie (whose end
# only this process remembers) is refused after a restart too.
_PROCESS_KEY = secrets.token_bytes(32)


def _sign(token: str, payload: str) -> str:
    return hmac.new(token.encode("utf-8") + _PROCESS_KEY, payload.encode("utf-8"), hashlib.sha256).hexdigest()


# Sessions ended by /logout before their time (this server process's memory: a restart forgets them, and they end at
# their expiry anyway), by their nonce, with that expiry.
_ENDED: dict[str, int] = {}
_ENDED_LOCK = threading.Lock()


def session_valid(token: str, cookie: str, *, now: float | None = None) -> bool:
    """Whether `cookie` is a session this token signed, not expired and not logged out (constant-time comparison)."""
    payload, _, signature = cookie.rpartition(".")
    expiry, _, nonce = payload.partition(".")
    if not payload or not expiry.isdigit():
        return False
    if not hmac.compare_digest(_sign(token, payload).encode("utf-8"), signature.encode("utf-8")):
        return False
    with _ENDED_LOCK:
        if nonce in _ENDED:
            return False
    return int(expiry) > (time.time() if now is None else now)


def end_session(token: str, cookie: str) -> None:
    """Log a session out: its cookie, even a copy of it, is refused from now on (until this process restarts, when
    it is refused only once it expires)."""
    if not session_valid(token, cookie):
        return
    expiry, _, rest = cookie.partition(".")
    nonce = rest.rpartition(".")[0]
    now = time.time()
    with _ENDED_LOCK:
        for gone in [n for n, until in _ENDED.items() if until <= now]:
            del _ENDED[gone]
        _ENDED[nonce] = int(expiry)


@dataclass(frozen=True)
class Presented:
    """What a request carries: the bearer token (`Authorization: Bearer ...`) or the page's session cookie."""

    kind: Literal["bearer", "session"]
    value: str


def presented_token(request: Request) -> Presented | None:
    """What a request carries: the bearer token first, else the page's session cookie (None: neither)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return Presented("bearer", value.strip())
    cookie = request.cookies.get(COOKIE)
    return Presented("session", cookie) if cookie else None


def is_token(expected: str, given: str) -> bool:
    """Whether `given` is the server's token itself (constant time): a bearer header, the login form."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def token_matches(expected: str | None, presented: Presented | None) -> bool:
    """True when no token is configured, or the request carries it as a bearer token, or a live session it signed
    as the page's cookie (never the other way round: a cookie is no token, a token no cookie)."""
    if expected is None:
        return True
    if presented is None:
        return False
    if presented.kind == "session":
        return session_valid(expected, presented.value)
    return is_token(expected, presented.value)


def unauthorized(presented: Presented | None) -> str:
    """Why a request was refused: it carried no token, or another one (never which one)."""
    if presented is None:
        return "this server needs its token: send `Authorization: Bearer TOKEN` (or log in on the page)"
    if presented.kind == "session":
        return ("the page's session has ended (logged out, 12 hours passed, the server restarted or its token "
                "changed): log in again")
    return "that is not this server's token: check the one sent as `Authorization: Bearer TOKEN` (or log in again)"


def wants_page(request: Request) -> bool:
    """A browser opening a page (a GET that accepts HTML): a refusal sends it to /login rather than answer in JSON."""
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


def require_token(request: Request) -> None:
    """A FastAPI dependency: 401 (JSON) unless the request carries the server's token."""
    expected, presented = request.app.state.settings.token, presented_token(request)
    if not token_matches(expected, presented):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED, detail=unauthorized(presented),
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
