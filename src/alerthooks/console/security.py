"""The console's gate (Basic auth or the host app's own check) and its CSRF tokens."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

AuthCheck = Callable[[Request], bool | Awaitable[bool]]
Auth = tuple[str, str] | AuthCheck

REALM = "alerthooks console"
CSRF_COOKIE = "alerthooks_csrf"
CSRF_FIELD = "csrf"


def check_auth(auth: Any) -> Auth:
    """``auth`` if it is usable, else ValueError: the console never serves without a gate."""
    if auth is None:
        raise ValueError(
            "console(auth=...) is required: a (user, password) pair for Basic auth or a "
            "callable(request) -> bool; the console does not serve without one"
        )
    if isinstance(auth, tuple):
        if len(auth) != 2 or not all(isinstance(part, str) and part for part in auth):
            raise ValueError("console auth= pair must be two non-empty strings (user, password)")
        if ":" in auth[0]:
            raise ValueError("console auth= user name must not contain ':' (Basic auth)")
        return auth
    if callable(auth):
        return auth  # type: ignore[no-any-return]
    raise ValueError(
        f"console auth= must be a (user, password) pair or a callable(request) -> bool, "
        f"got {type(auth).__name__}"
    )


def csrf_key(auth: Auth, secret: str | bytes | None) -> bytes:
    """The key that signs CSRF tokens: ``secret`` when given; for Basic auth one derived from
    the credentials (the same in every process that has them); else random per process."""
    if secret is not None:
        return secret.encode() if isinstance(secret, str) else bytes(secret)
    if isinstance(auth, tuple):
        user, password = auth
        return hmac.new(
            f"{user}\0{password}".encode(), b"alerthooks console csrf", hashlib.sha256
        ).digest()
    return os.urandom(32)


class Gate:
    """ASGI middleware: every request passes ``auth`` or is answered 401 (Basic auth, with its
    challenge) or 403 (a callable that said no)."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth
        if isinstance(auth, tuple):
            self._user = auth[0].encode()
            self._password = auth[1].encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        denied: Response | None = None
        if isinstance(self.auth, tuple):
            if not self._basic_ok(request.headers.get("authorization", "")):
                denied = PlainTextResponse(
                    "authentication required\n",
                    status_code=401,
                    headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
                )
        else:
            allowed = self.auth(request)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if allowed is not True:
                denied = PlainTextResponse("forbidden\n", status_code=403)
        if denied is not None:
            denied.headers["cache-control"] = "no-store"
            await denied(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _basic_ok(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        # Both compared, always, so the time taken does not tell which was wrong.
        user_ok = hmac.compare_digest(user, self._user)
        password_ok = hmac.compare_digest(password, self._password)
        return bool(sep) and user_ok and password_ok


class Csrf:
    """Signed double-submit tokens: a random nonce with its HMAC, set as a ``SameSite=Strict``
    cookie and repeated in each form; a POST passes when both are present, equal and signed."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def _sign(self, nonce: str) -> str:
        mac = hmac.new(self.key, nonce.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def new(self) -> str:
        """A fresh token."""
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._sign(nonce)}"

    def valid(self, token: str | None) -> bool:
        """Whether ``token`` is one this key signed."""
        if not token or token.count(".") != 1:
            return False
        nonce, mac = token.split(".")
        return hmac.compare_digest(mac.encode(), self._sign(nonce).encode())

    def token_for(self, request: Request) -> str:
        """The request's cookie token when valid, else a new one (the page sets it)."""
        found = request.cookies.get(CSRF_COOKIE)
        return found if found is not None and self.valid(found) else self.new()

    def set_cookie(self, response: Response, request: Request, token: str) -> None:
        """Set the token cookie on ``response`` unless the request carried it already."""
        if request.cookies.get(CSRF_COOKIE) == token:
            return
        response.set_cookie(
            CSRF_COOKIE,
            token,
            path=request.scope.get("root_path") or "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def passes(self, request: Request, submitted: str | None) -> bool:
        """Whether a POST carries the same valid token in its cookie and its form."""
        cookie = request.cookies.get(CSRF_COOKIE)
        if cookie is None or submitted is None or not self.valid(cookie):
            return False
        return hmac.compare_digest(cookie.encode(), submitted.encode())
