"""The request guard of ``ganzoo serve``: security headers, Host-header check (DNS
rebinding) and refusal of request paths that try to leave the served roots."""
from __future__ import annotations

import json

from starlette.responses import Response


def error_response(status: int, message: str) -> Response:
    """HTTP ``status`` with ``{\"error\": \"one line\"}``."""
    line = " ".join(str(message).split())[:1000] or "error"
    return Response(json.dumps({"error": line}, ensure_ascii=False), status_code=status,
                    media_type="application/json", headers={"cache-control": "no-store"})


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
]


def _host_name(header: str) -> str:
    """The name part of a Host header: ``[::1]:8000`` → ``[::1]``, ``localhost:8000`` → ``localhost``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[:header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """Refuses request paths that try to climb out (``..``, ``.``, ``\\``, NUL, encoded
    slashes) before routing, and Host headers not in ``allowed_hosts`` (when given: a page
    on another site that DNS-rebinds its name to 127.0.0.1 cannot read the app); adds
    security headers to every response."""

    def __init__(self, app, allowed_hosts: list[str] | None = None):
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path: str = scope.get("path", "")
        raw: bytes = (scope.get("raw_path") or path.encode()).split(b"?")[0].lower()

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        if self.allowed is not None:
            host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
            if _host_name(host) not in self.allowed:
                refuse = error_response(400, f"host {host[:100]!r} not allowed: open the app as "
                                             f"http://localhost:PORT/ or http://127.0.0.1:PORT/")
                return await refuse(scope, receive, send_with_headers)
        if (b"%2f" in raw or b"%5c" in raw or b"%00" in raw or "\\" in path or "\x00" in path
                or any(seg in (".", "..") for seg in path.split("/"))):
            refuse = error_response(400, "path not allowed (no '..', '.', backslashes or encoded slashes)")
            return await refuse(scope, receive, send_with_headers)
        await self.app(scope, receive, send_with_headers)
