"""The team leads' dashboard: one self-contained page (no CDN, no external assets: it works offline)
and the JSON API behind it.

    GET /dashboard              the page
    GET /api/summary            stage x sentiment now and in the previous period, daily trend per
                                stage, share of low-confidence messages
    GET /api/tickets            the filtered list (same filters as `tagger tickets`)

Access: from 127.0.0.1/::1 it is open. From anywhere else it needs `TAGGER_API_TOKEN`: send it as
`Authorization: Bearer <token>`, or open `/dashboard?token=<token>` once (the page keeps it in a
same-site, HTTP-only cookie). Without a configured token, non-local clients get 403 with the reason.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tagger.config import Settings
from tagger.errors import TaggerError
from tagger.labels import CHANNELS, SENTIMENTS, STAGES
from tagger.service.access import COOKIE, allowed, token_matches
from tagger.service.reports import TICKET_COLUMNS, parse_period, parse_when
from tagger.service.store import Store

MAX_LIST = 500


def check_access(request: Request, settings: Settings) -> Response | None:
    """None when the request may see the dashboard, else the 401/403 answer with its reason."""
    if allowed(request, (settings.api_token,), settings.trusted_proxies, query=True, cookie=True):
        return None
    if not settings.api_token:
        return JSONResponse({"status": "forbidden", "reason": "the dashboard is open to localhost only; set "
                             "TAGGER_API_TOKEN to expose it and send the token (behind a reverse proxy, set "
                             "TAGGER_TRUSTED_PROXIES)"}, status_code=403)
    return JSONResponse({"status": "unauthorized", "reason": "missing or wrong token (Authorization: Bearer "
                         "<TAGGER_API_TOKEN>, or ?token= on the page URL)"}, status_code=401,
                        headers={"WWW-Authenticate": "Bearer"})


_PARAMS = {"/dashboard": {"token"},
           "/api/summary": {"period", "until", "helpdesk", "channel", "lang", "token"},
           "/api/tickets": {"stage", "sentiment", "channel", "lang", "helpdesk", "min_confidence", "max_confidence",
                            "since", "until", "limit", "token"}}
_NAME = re.compile(r"[\w.:@+-]{1,64}")


def _check_params(request: Request) -> None:
    """Every parameter known, given once: a typo or a repeated filter is a 400, never silently ignored."""
    known = _PARAMS.get(request.url.path, set())
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise TaggerError(f"unknown parameter(s) {', '.join(unknown)}; this route takes {', '.join(sorted(known))}")
    repeated = sorted({k for k, _ in request.query_params.multi_items()
                       if len(request.query_params.getlist(k)) > 1})
    if repeated:
        raise TaggerError(f"parameter(s) {', '.join(repeated)} given more than once")


def _filters(request: Request) -> dict:
    q = request.query_params
    out = {}
    for name, allowed_values in (("stage", STAGES), ("sentiment", SENTIMENTS), ("channel", CHANNELS)):
        value = q.get(name) or None
        if value is not None and value not in allowed_values:
            raise TaggerError(f"{name} must be one of {', '.join(allowed_values)}")
        out[name] = value
    for name in ("lang", "helpdesk"):
        value = q.get(name) or None
        if value is not None and not _NAME.fullmatch(value):
            raise TaggerError(f"{name} must be a name of at most 64 letters, digits or . : @ + - _")
        out[name] = value
    return out


def _float(request: Request, name: str) -> float | None:
    """A confidence bound: a finite number from 0 to 1."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also false for nan
        raise TaggerError(f"{name} must be a number from 0 to 1, got {raw[:40]!r}")
    return value


def _limit(request: Request, default: int = 100) -> int:
    raw = request.query_params.get("limit")
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]{1,6}", raw) or not 1 <= int(raw) <= MAX_LIST:
        raise TaggerError(f"limit must be a whole number from 1 to {MAX_LIST}, got {raw[:40]!r}")
    return int(raw)


def summary(store: Store, *, period: dt.timedelta, until: dt.datetime, helpdesk=None, channel=None, lang=None) -> dict:
    since = until - period
    filters = {"helpdesk": helpdesk, "channel": channel, "lang": lang}
    current = store.stage_sentiment_counts(since=since, until=until, **filters)
    previous = store.stage_sentiment_counts(since=since - period, until=since, **filters)
    days = max(1, round(period / dt.timedelta(days=1)))
    start_day = (until - dt.timedelta(days=days - 1)).date()
    per_day, review, total = store.daily_stage_counts(since=since, until=until, **filters)
    dates = [start_day + dt.timedelta(days=i) for i in range(days)]
    return {
        "since": since.isoformat(timespec="seconds"), "until": until.isoformat(timespec="seconds"),
        "current": current, "previous": previous, "total": total, "review": review,
        "review_share": round(review / total, 4) if total else 0.0,
        "trend": {"dates": [d.isoformat() for d in dates],
                  "stages": {s: [per_day[(d, s)] for d in dates] for s in STAGES}},
    }


def dashboard_routes(store: Store, settings: Settings) -> list[Route]:
    """The routes to mount in the service app."""

    def guarded(handler):
        async def endpoint(request: Request) -> Response:
            denied = check_access(request, settings)
            if denied is not None:
                return denied
            try:
                _check_params(request)
                response = await handler(request)
            except TaggerError as exc:
                return JSONResponse({"status": "bad request", "reason": str(exc)}, status_code=400)
            token = request.query_params.get("token", "")
            if token_matches(token, settings.api_token):
                response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return response
        return endpoint

    async def page(request: Request) -> Response:
        html = resources.files("tagger.service.static").joinpath("dashboard.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Cache-Control": "no-store",
                                           "Content-Security-Policy": "default-src 'self'; style-src 'self' "
                                           "'unsafe-inline'; script-src 'self' 'unsafe-inline'"})

    async def api_summary(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        period = parse_period(request.query_params.get("period") or "7d")
        until = parse_when(request.query_params.get("until")) or dt.datetime.now(dt.UTC)
        f = _filters(request)
        data = await run_in_threadpool(summary, store, period=period, until=until, helpdesk=f["helpdesk"],
                                       channel=f["channel"], lang=f["lang"])
        return JSONResponse(data)

    async def api_tickets(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        f = _filters(request)
        limit = _limit(request)
        rows = await run_in_threadpool(
            store.list_messages, **f, min_confidence=_float(request, "min_confidence"),
            max_confidence=_float(request, "max_confidence"), since=parse_when(request.query_params.get("since")),
            until=parse_when(request.query_params.get("until")), limit=limit)
        out = []
        for r in rows:
            item = {k: r[k] for k in TICKET_COLUMNS}
            item["created_at"] = r["created_at"].isoformat(timespec="seconds")
            out.append(item)
        return JSONResponse({"tickets": out, "count": len(out)})

    return [
        Route("/dashboard", guarded(page), methods=["GET"]),
        Route("/api/summary", guarded(api_summary), methods=["GET"]),
        Route("/api/tickets", guarded(api_tickets), methods=["GET"]),
    ]
