"""What leaves the process must be safe for where it goes: log lines carry no secrets, terminals get no
control sequences, links are web links, databases get no NUL bytes.

- `install_log_redaction()` puts `RedactQuery` on the loggers that print URLs (uvicorn's access log, httpx's
  request log): every query parameter's value is replaced by `***` unless its name is one of the harmless
  `PLAIN_PARAMS` (dashboard filters), so `?token=<secret>` (django-helpdesk can send its token no other
  way; `/dashboard?token=` too) never reaches a log line.
- `printable(text)` removes control characters and ANSI escape sequences before text reaches a terminal.
- `web_url(url)` keeps only http(s) links without control characters (a `javascript:` link is dropped).
- `no_nul(value)` strips NUL bytes, which PostgreSQL cannot store in text, from strings and containers.
"""
from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit

PLAIN_PARAMS = frozenset({"limit", "since", "until", "period", "stage", "sentiment", "lang", "channel",
                          "helpdesk", "review", "format", "page", "status"})
REDACTED = "***"
_QUERY_PARAM = re.compile(r"([?&;])([^=&;#\s\"']*)=([^&;#\s\"']*)")
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_LOGGERS = ("uvicorn.access", "httpx", "httpcore")


def redact_query(text: str) -> str:
    """`/webhooks/x?token=abc&limit=5` -> `/webhooks/x?token=***&limit=5`."""
    def one(m: re.Match) -> str:
        name = m.group(2)
        return m.group(0) if name.lower() in PLAIN_PARAMS else f"{m.group(1)}{name}={REDACTED}"

    return _QUERY_PARAM.sub(one, text) if "=" in text else text


class RedactQuery(logging.Filter):
    """Redacts query values in a record's message and string-like arguments (keeping their positions,
    which uvicorn's access formatter reads one by one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_query(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_query(str(a)) if isinstance(a, str) or _is_url(a) else a
                                for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact_query(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def _is_url(value: Any) -> bool:
    return type(value).__name__ == "URL"  # httpx.URL, yarl.URL: printed with their query


def install_log_redaction() -> None:
    """Add `RedactQuery` to the URL-printing loggers and their handlers (idempotent). uvicorn re-creates its
    loggers' handlers at start-up, so the filter sits on the loggers; records that propagate from a child
    logger skip logger filters, so it also sits on the handlers present now."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQuery) for f in logger.filters):
            logger.addFilter(RedactQuery())
        for handler in logger.handlers:
            if not any(isinstance(f, RedactQuery) for f in handler.filters):
                handler.addFilter(RedactQuery())


def printable(text: Any) -> str:
    """`text` without ANSI escapes or control characters (newlines and tabs become spaces)."""
    s = "" if text is None else str(text)
    s = _ANSI.sub("", s).replace("\n", " ").replace("\t", " ").replace("\r", " ")
    return _CONTROL.sub("", s)


def web_url(url: Any) -> str | None:
    """`url` when it is an http(s) link with a host and no control characters or spaces, else None."""
    if not isinstance(url, str) or not url or len(url) > 2048 or _CONTROL.search(url) or _ANSI.search(url):
        return None
    url = url.strip()
    if any(c.isspace() for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def no_nul(value: Any) -> Any:
    """`value` with NUL bytes removed from every string in it (lists, tuples and dicts walked)."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, list | tuple):
        return type(value)(no_nul(v) for v in value)
    if isinstance(value, dict):
        return {no_nul(k): no_nul(v) for k, v in value.items()}
    return value
