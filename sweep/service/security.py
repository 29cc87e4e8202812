"""The token rule: once the server has a token, every request needs it (API, pages and the mounted dashboard), as
`Authorization: Bearer TOKEN` or, for the page, the cookie that `/login` sets. Compared in constant time, never
logged. Without a token (only allowed on a loopback address) everything is open to the local machine."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status

COOKIE = "sweep_token"


def presented_token(request: Request) -> str | None:
    """The token a request carries (bearer header first, then the page's cookie)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE) or None


def token_matches(expected: str | None, presented: str | None) -> bool:
    """True when no token is configured, or the presented one equals it (constant time)."""
    if expected is None:
        return True
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8"))


def unauthorized(presented: str | None) -> str:
    """Why a request was refused: it carried no token, or another one (never which one)."""
    if presented is None:
        return "this server needs its token: send `Authorization: Bearer TOKEN` (or log in on the page)"
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
