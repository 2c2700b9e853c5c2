"""Who may drive a daemon: a bearer token kept 0600 under AGENTOS_HOME, and the daemon's
own Host and Origin.

The token is created once (`load_or_create_token`) with O_EXCL and mode 0600 in a 0700
directory; a token file that others can read is refused rather than used. `Guard` is a
plain ASGI middleware: every request must name the daemon itself in `Host` (a page on
another site that rebinds its DNS name to 127.0.0.1 sends its own name, and is refused);
every API request must carry `Authorization: Bearer <token>`; and a state-changing request
must also carry no foreign `Origin`, no cross-site `Sec-Fetch-Site`, and a JSON body type,
so a form or a fetch from a web page in the operator's browser cannot drive the API.

Only the dashboard's HTML page is served without the token: it holds no data, and reads
the token from the URL fragment (never sent to any server) to call the API.
"""
from __future__ import annotations

import hmac
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Callable

TOKEN_FILE = "serve.token"
STATE_FILE = "serve.json"

Scope = dict[str, Any]
ASGIApp = Any  # an ASGI application: (scope, receive, send) -> awaitable


class TokenError(Exception):
    """The token file is missing, unreadable or readable by others."""


def _private_dir(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True, mode=0o700)


def load_or_create_token(home: Path) -> str:
    """The daemon's bearer token, made on first use as `home/serve.token` (mode 0600)."""
    _private_dir(home)
    path = home / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_token(home)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def read_token(home: Path) -> str:
    """Read the token, refusing a file that is not a private regular file."""
    path = home / TOKEN_FILE
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        raise TokenError(f"no token at {path}: is `agentctl serve` running with this AGENTOS_HOME?") from None
    if not stat.S_ISREG(st.st_mode):
        raise TokenError(f"{path} is not a regular file")
    if st.st_mode & 0o077:
        raise TokenError(f"{path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
                         f"run `chmod 600 {path}`")
    token = path.read_text().strip()
    if not token:
        raise TokenError(f"{path} is empty")
    return token


def write_state(home: Path, state: dict[str, Any]) -> Path:
    """`home/serve.json`: where the daemon listens, for the CLI to find it (mode 0600)."""
    _private_dir(home)
    path = home / STATE_FILE
    tmp = home / (STATE_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)
    return path


def read_state(home: Path) -> dict[str, Any]:
    path = home / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise TokenError(f"no daemon is serving from {home} (start one with `agentctl serve`)") from None
    except ValueError as e:
        raise TokenError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(state, dict) or not isinstance(state.get("url"), str):
        raise TokenError(f"{path} does not name a daemon url")
    return state


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Guard:
    """ASGI middleware: Host always; the bearer token on every path but `public`; Origin,
    Sec-Fetch-Site and a JSON content type on state-changing methods."""

    def __init__(self, app: ASGIApp, token: str, port: Callable[[], int],
                 public: frozenset[str] = frozenset({"/", "/favicon.ico"})) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.port = port
        self.public = public

    def hosts(self) -> set[bytes]:
        p = self.port()
        return {f"127.0.0.1:{p}".encode(), f"localhost:{p}".encode()}

    def origins(self) -> set[bytes]:
        p = self.port()
        return {f"http://127.0.0.1:{p}".encode(), f"http://localhost:{p}".encode()}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for k, v in scope.get("headers", ()):
            headers.setdefault(k.lower(), v)
        why = self.refuse(scope, headers)
        if why is not None:
            status, msg = why
            body = json.dumps({"error": msg}).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def refuse(self, scope: Scope, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        """Why this request is refused (status, message), or None to let it through."""
        if headers.get(b"host", b"") not in self.hosts():
            return 421, "wrong Host: this daemon answers only to its own 127.0.0.1 address"
        method = scope.get("method", "GET")
        if scope.get("path") in self.public and method in SAFE_METHODS:
            return None
        if not hmac.compare_digest(headers.get(b"authorization", b""), self.expected):
            return 401, "a bearer token is required (Authorization: Bearer <token from AGENTOS_HOME/serve.token>)"
        if method in SAFE_METHODS:
            return None
        origin = headers.get(b"origin")
        if origin is not None and origin not in self.origins():
            return 403, "cross-origin request refused"
        site = headers.get(b"sec-fetch-site")
        if site is not None and site not in (b"same-origin", b"none"):
            return 403, "cross-site request refused"
        ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if ctype != b"application/json":
            return 415, "state-changing requests must send Content-Type: application/json"
        return None


__all__ = ["Guard", "STATE_FILE", "TOKEN_FILE", "TokenError", "load_or_create_token", "read_state",
           "read_token", "write_state"]
