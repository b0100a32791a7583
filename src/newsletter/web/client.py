"""Who is asking: this machine, or someone else (possibly through a reverse proxy on this machine)."""

from __future__ import annotations

from flask import request

LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def is_local_request() -> bool:
    """From this machine and not relayed by a proxy: a proxy on localhost carries requests from anywhere."""
    return request.remote_addr in LOOPBACK and not any(header in request.headers for header in PROXY_HEADERS)


def client_address() -> str:
    """The visitor's IP, for rate limits and consent records.

    Behind a reverse proxy on this machine every request comes from 127.0.0.1, so the address the proxy
    appended to X-Forwarded-For is used instead. Only a local peer is believed: anyone else could write
    that header themselves.
    """
    remote = request.remote_addr or ""
    forwarded = request.headers.get("X-Forwarded-For", "")
    if remote in LOOPBACK and forwarded.strip():
        return forwarded.split(",")[-1].strip()
    return remote
