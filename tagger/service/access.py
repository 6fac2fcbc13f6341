"""Who may see what: the dashboard, its API, `/metrics` and the details of `/healthz`.

- With no token configured, only local clients (loopback) are let in.
- With `TAGGER_API_TOKEN` set, every client must send it (`Authorization: Bearer <token>`; the dashboard page
  also takes `?token=` once and keeps it in a cookie). `/metrics` takes `TAGGER_METRICS_TOKEN` when that is
  set (a scraper need not hold the dashboard's token), else the API token.
- "Local" is decided by the peer address, except behind a reverse proxy: with `TAGGER_TRUSTED_PROXIES`
  (comma-separated addresses or networks, e.g. `127.0.0.1,10.0.0.0/8`) a request from such a proxy is judged
  by the client address the proxy put in `X-Forwarded-For` (the right-most address that is not itself a
  trusted proxy, or the left-most when all are); a request from a trusted proxy without that header is not local. A request that carries
  forwarding headers from a peer that is *not* a configured proxy is not local either: a same-host proxy
  nobody configured must not make the whole internet look like localhost.
"""
from __future__ import annotations

import hmac
from functools import lru_cache
from ipaddress import ip_address, ip_network

from starlette.requests import Request

from tagger.errors import ConfigError

COOKIE = "tagger_token"
_FORWARD_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


@lru_cache(maxsize=16)
def parse_proxies(spec: str) -> tuple:
    """`"127.0.0.1, 10.0.0.0/8"` -> networks; ConfigError naming a bad entry."""
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        try:
            out.append(ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"TAGGER_TRUSTED_PROXIES: {part!r} is not an IP address or network") from None
    return tuple(out)


def _trusted(host: str, proxies: tuple) -> bool:
    try:
        addr = ip_address(host)
    except ValueError:
        return False
    return any(addr in net for net in proxies)


def client_host(request: Request, trusted_proxies: str = "") -> str | None:
    """The client's address as far as it can be trusted; None when it cannot be known."""
    peer = request.client.host if request.client else ""
    proxies = parse_proxies(trusted_proxies)
    forwarded = any(h in request.headers for h in _FORWARD_HEADERS)
    if not _trusted(peer, proxies):
        return None if forwarded else peer
    chain = [h.strip() for v in request.headers.getlist("x-forwarded-for") for h in v.split(",") if h.strip()]
    for hop in reversed(chain):
        if not _trusted(hop, proxies):
            return hop
    return chain[0] if chain else None  # every hop is ours: the first one is the client; no header: unknown


def is_local(request: Request, trusted_proxies: str = "") -> bool:
    host = client_host(request, trusted_proxies)
    if host is None:
        return False
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost", "testclient")


def offered_token(request: Request, *, query: bool = False, cookie: bool = False) -> str:
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not token and query:
        token = request.query_params.get("token", "")
    if not token and cookie:
        token = request.cookies.get(COOKIE, "")
    return token


def token_matches(offered: str, *expected: str) -> bool:
    """Whether `offered` equals one of the configured (non-empty) tokens, in constant time."""
    return bool(offered) and any(e and hmac.compare_digest(offered.encode(), e.encode()) for e in expected)


def allowed(request: Request, tokens: tuple[str, ...], trusted_proxies: str = "", **sources: bool) -> bool:
    """Open to local clients while no token is configured; otherwise to whoever sends one of `tokens`."""
    if not any(tokens):
        return is_local(request, trusted_proxies)
    return token_matches(offered_token(request, **sources), *tokens)
