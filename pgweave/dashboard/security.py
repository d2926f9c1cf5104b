"""Authentication (bearer token or basic auth), CSRF tokens and security headers."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE = "pgweave_csrf"
CSRF_FIELD = "csrf"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


def presented_secret(authorization: str) -> str | None:
    """The secret of an ``Authorization`` header: a bearer token or basic auth's password."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


class SecurityMiddleware:
    """Requires the token (when set) on every request, sets the security headers and hands
    each browser a CSRF token in a cookie (``request.state.csrf``)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if self.token is not None and not self._authorized(request):
            response = PlainTextResponse(
                "authentication required", 401, {"www-authenticate": 'Basic realm="pgweave"'}
            )
            await response(scope, receive, send)
            return
        existing = request.cookies.get(CSRF_COOKIE)
        csrf = existing if existing and len(existing) == 43 else secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf"] = csrf

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if csrf != existing:
                    headers.append(
                        "set-cookie",
                        f"{CSRF_COOKIE}={csrf}; Path=/; HttpOnly; SameSite=Strict",
                    )
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _authorized(self, request: Request) -> bool:
        assert self.token is not None
        secret = presented_secret(request.headers.get("authorization", ""))
        return secret is not None and hmac.compare_digest(secret.encode(), self.token.encode())


def csrf_problem(request: Request, submitted: str | None) -> str | None:
    """Why a POST fails the CSRF check (None when it passes): the form's token must equal
    the cookie's, and a browser's Origin, when sent, must be this host."""
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        return "the form's CSRF token is missing or does not match; reload the page"
    origin = request.headers.get("origin")
    if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
        return "cross-origin form submission refused"
    return None
