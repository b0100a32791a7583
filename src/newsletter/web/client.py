"""Who is asking: this machine, or someone else (possibly through a reverse proxy), and over https or not.

Proxy headers are believed only from the peers listed in `[web] trusted_proxies` (none by default):
anyone else could write them. Behind nginx or Caddy on this machine, list 127.0.0.1 (docs/deploy.md), so
that the subscribe form's per-IP limit and consent records see the real client, not the proxy.
"""

from __future__ import annotations

from flask import request

from .state import state

LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def is_local_request() -> bool:
    """From this machine and not relayed by a proxy: a proxy on localhost carries requests from anywhere."""
    return request.remote_addr in LOOPBACK and not any(header in request.headers for header in PROXY_HEADERS)


def _from_trusted_proxy() -> bool:
    return (request.remote_addr or "") in state().config.web.trusted_proxies


def client_address() -> str:
    """The visitor's IP, for rate limits and consent records.

    From a trusted proxy, the right-most X-Forwarded-For entry that is not itself a trusted proxy (each
    proxy appends the peer it saw; entries further left were written by the client and prove nothing).
    """
    remote = request.remote_addr or ""
    if not _from_trusted_proxy():
        return remote
    trusted = state().config.web.trusted_proxies
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return hops[0] if hops else remote


def request_is_https() -> bool:
    """Served over https: directly, or by a trusted proxy that says so in X-Forwarded-Proto."""
    if request.scheme == "https":
        return True
    return _from_trusted_proxy() and request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() == "https"
