"""CSRF protection for HTML forms: a per-browser secret cookie, a token derived from
it in each form, and a same-origin check; self-contained (aiohttp alone).

How it works:

- Every response under the guarded prefix makes sure the browser holds a secret:
  32 random bytes in the cookie `asyncflow_csrf`, HttpOnly (no script reads it),
  SameSite=Strict (no request started by another site carries it).
- Each form carries a hidden field `csrf_token` = HMAC-SHA256(secret, purpose +
  binding), from `CsrfGuard.token(request)`.
- Every unsafe request (POST, PUT, PATCH, DELETE) under the prefix is refused
  with 403, before its handler runs (so nothing changes), unless
  1. its `Origin` header (or, without one, its `Referer`) names the host the
     request was sent to (its `Host` header), and
  2. its form field `csrf_token` (or header `X-CSRF-Token`) is the token of the
     secret in its cookie.

A page of another site can neither read the token (same-origin policy; the
cookie is HttpOnly) nor send the cookie (SameSite=Strict), and browsers send
`Origin` with every POST. A request with neither `Origin` nor `Referer` is
refused: browsers always send one of them on a form POST, and a client that is
no browser has no use for these forms.

Choices:

- No server-side key: the token depends only on the browser's secret, so any
  replica checks any other replica's tokens and a restart invalidates nothing.
  A sibling subdomain able to plant its own cookie (cookie tossing) is stopped
  by the Origin check.
- The scheme is not compared in the Origin check, only host and port: a proxy
  that terminates TLS forwards plain HTTP with the browser's `https://` Origin.
  A proxy must pass the browser's `Host` on (nginx: `proxy_set_header Host
  $host`), or every POST is refused.
- `binding(request)` ties tokens to something more than the browser, e.g. a
  login session's id: a token then stops working when the session changes.
  Default: nothing ("").

Use: `guard = CsrfGuard("/ui")`, `web.Application(middlewares=[guard.middleware])`,
and `<input type="hidden" name="csrf_token" value="{{ guard.token(request) }}">`
in every form (templates escape it; it is URL-safe base64 anyway).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

COOKIE = "asyncflow_csrf"
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PURPOSE = b"asyncflow-csrf-v1:"
"""Prefix of the HMAC message, so the secret signs nothing else by accident."""
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")
"""token_urlsafe(32): 32 bytes in unpadded URL-safe base64."""
_REQUEST_KEY = web.RequestKey("asyncflow.csrf.secret", str)
"""This request's secret: its cookie's, or the new one the response sets."""


def token_of(secret: str, binding: str = "") -> str:
    digest = hmac.new(secret.encode(), PURPOSE + binding.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def origin_problem(request: web.Request) -> str:
    """Why the request does not come from a page of this host ("" when it does)."""
    origin = request.headers.get("Origin")
    source, name = (origin, "Origin") if origin is not None else (
        request.headers.get("Referer"), "Referer")  # fmt: skip
    if source is None:
        return "the request has neither an Origin nor a Referer header"
    host = urlsplit(source).netloc.lower() if source != "null" else ""
    if not host or host != request.host.lower():
        return f"the {name} header ({source[:200]!r}) is not this server ({request.host[:200]!r})"
    return ""


class CsrfGuard:
    def __init__(self, prefix: str = "/", binding: Callable[[web.Request], str] | None = None
                 ) -> None:  # fmt: skip
        """Guard the paths under `prefix` ("/ui" guards /ui and /ui/..., not /uix)."""
        self.prefix = prefix.rstrip("/")
        self.binding = binding or (lambda request: "")

    def token(self, request: web.Request) -> str:
        """The token for this browser's forms (a new secret, set by the middleware
        on the response, when the browser has none yet)."""
        return token_of(self._secret(request), self.binding(request))

    def guards(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    async def refusal(self, request: web.Request) -> str:
        """Why an unsafe request is refused ("" when it may go on)."""
        problem = origin_problem(request)
        if problem:
            return problem
        cookie = request.cookies.get(COOKIE, "")
        if not _SECRET.fullmatch(cookie):
            return "the browser sent no CSRF cookie: load the page again"
        sent = request.headers.get(HEADER)
        if sent is None:
            value = (await request.post()).get(FIELD)
            sent = value if isinstance(value, str) else ""
        expected = token_of(cookie, self.binding(request))
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            return "the form's CSRF token is missing or wrong: load the page again"
        return ""

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.guards(request.path):
            return await handler(request)
        if request.method in UNSAFE:
            reason = await self.refusal(request)
            if reason:
                return web.Response(status=403, text=f"403 Forbidden: {reason}\n")
        response = await handler(request)
        secret = request.get(_REQUEST_KEY)
        if secret is not None and request.cookies.get(COOKIE) != secret:
            response.set_cookie(COOKIE, secret, path="/", httponly=True, samesite="Strict",
                                secure=request.secure)  # fmt: skip
        return response

    def _secret(self, request: web.Request) -> str:
        secret = request.get(_REQUEST_KEY)
        if secret is None:
            cookie = request.cookies.get(COOKIE, "")
            secret = cookie if _SECRET.fullmatch(cookie) else secrets.token_urlsafe(32)
            request[_REQUEST_KEY] = secret
        return secret
