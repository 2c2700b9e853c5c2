"""A small HTTP client for the daemon's API (stdlib only), used by agentctl.

It finds the daemon through `AGENTOS_HOME/serve.json` and its token through
`AGENTOS_HOME/serve.token`; it sends the daemon's own Host and a JSON content type, which
the daemon's Guard requires.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from .auth import read_state, read_token


class ApiError(Exception):
    """The daemon refused the request (status and its one-line error) or could not be reached."""

    def __init__(self, msg: str, status: int = 0) -> None:
        super().__init__(msg)
        self.status = status


class Client:
    def __init__(self, home: Path, url: str | None = None, token: str | None = None, timeout: float = 10.0) -> None:
        self.url = (url or read_state(home)["url"]).rstrip("/")
        self.token = token or read_token(home)
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            try:
                msg = json.loads(e.read() or b"{}").get("error") or e.reason
            except ValueError:
                msg = e.reason
            raise ApiError(str(msg), e.code) from None
        except (urllib.error.URLError, OSError) as e:
            raise ApiError(f"cannot reach the daemon at {self.url}: {getattr(e, 'reason', e)}") from None

    def get(self, path: str) -> Any:
        with self._request("GET", path) as r:
            return json.loads(r.read())

    def post(self, path: str, body: Any) -> Any:
        with self._request("POST", path, body) as r:
            return json.loads(r.read())

    def text(self, path: str) -> str:
        with self._request("GET", path) as r:
            return str(r.read().decode())

    def stream(self, path: str) -> Iterator[dict[str, Any]]:
        """NDJSON lines of a streaming answer, as they arrive."""
        with self._request("GET", path, timeout=3600.0) as r:
            for line in r:
                if line.strip():
                    yield json.loads(line)


__all__ = ["ApiError", "Client"]
