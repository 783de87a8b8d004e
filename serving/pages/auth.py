"""Who may open a page: in production, whoever entered the API key once.

The key is typed into a form, checked in constant time, and never stored in the
browser: the cookie holds a token signed (itsdangerous) with a secret derived from the
key, so changing the key ends every session. The cookie is http-only (no script reads
it), SameSite=Strict (no other site's form or link sends it, so a POST from a page of
ours is one the user made) and Secure in production (never sent over plain HTTP, except
to the loopback, which browsers treat as secure). In development the pages are open,
and say so on every page.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from serving.settings import Settings

COOKIE = "l2c_session"
MAX_AGE_SECONDS = 12 * 3600
_SALT = "l2c-cockpit-session"


class LoginRequired(Exception):
    """The page needs the key; the handler sends the browser to the login form."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    secret = hmac.new(settings.api_key.get_secret_value().encode(), _SALT.encode(),
                      hashlib.sha256).hexdigest()
    return URLSafeTimedSerializer(secret, salt=_SALT)


def is_open(settings: Settings) -> bool:
    """Development mode: every page open, with a banner saying so."""
    return settings.environment == "development"


def session_token(settings: Settings) -> str:
    return _serializer(settings).dumps({"who": "cockpit"})


def has_session(request: Request, settings: Settings) -> bool:
    token = request.cookies.get(COOKIE)
    if not token:
        return False
    try:
        _serializer(settings).loads(token, max_age=MAX_AGE_SECONDS)
    except BadSignature:  # includes an expired token (SignatureExpired)
        return False
    return True


def safe_next(path: str | None) -> str:
    """Only a path of this site to go back to after the login (no open redirect)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def same_origin(request: Request) -> bool:
    """A form sent from one of our pages (or by a client that names no origin). In
    production SameSite=Strict already keeps the cookie from another site's form; in
    development, where no cookie is needed, this keeps another site from promoting."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.url.netloc


def cookie_is_secure(request: Request, settings: Settings) -> bool:
    return not is_open(settings) or request.url.scheme == "https"
