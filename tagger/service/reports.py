"""What team leads ask of the store: filtered ticket lists (table, JSON, CSV) and stage-by-sentiment
reports with the trend against the previous period of the same length."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from typing import TYPE_CHECKING, Any

from tagger.errors import TaggerError
from tagger.labels import SENTIMENTS, STAGES
from tagger.service.sanitize import printable

if TYPE_CHECKING:
    from tagger.service.store import Store

_DURATION = re.compile(r"^(\d+)\s*([hdwm])$")
_UNITS = {"h": dt.timedelta(hours=1), "d": dt.timedelta(days=1), "w": dt.timedelta(weeks=1),
          "m": dt.timedelta(days=30)}


MAX_SPAN = dt.timedelta(days=3660)  # ten years: the longest period or look-back a report reads
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


def _duration(match: re.Match, value: str, what: str) -> dt.timedelta:
    count = int(match.group(1))
    unit = _UNITS[match.group(2)]
    if count > MAX_SPAN // unit:
        raise TaggerError(f"{what} {value!r} is longer than ten years")
    return count * unit


def parse_when(value: str | None, *, now: dt.datetime | None = None) -> dt.datetime | None:
    """`2026-11-01`, `2026-11-01T08:00`, or a duration back from now (`24h`, `7d`, `4w`, `3m`, at most ten years);
    TaggerError, with the reason, for anything else."""
    if not value:
        return None
    now = now or dt.datetime.now(dt.UTC)
    match = _DURATION.match(value.strip().lower())
    if match:
        return now - _duration(match, value, "time")
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise TaggerError(f"cannot read time {value!r}: use 2026-11-01, 2026-11-01T08:00 or 7d/24h/4w") from exc
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    if not EARLIEST <= parsed <= LATEST:
        raise TaggerError(f"time {value!r} is outside {EARLIEST:%Y}-{LATEST:%Y}")
    return parsed


def parse_period(value: str) -> dt.timedelta:
    """`7d`, `24h`, `4w`, `3m` (at most ten years)."""
    match = _DURATION.match(value.strip().lower())
    if not match:
        raise TaggerError(f"cannot read period {value!r}: use e.g. 7d, 24h, 4w, 3m")
    period = _duration(match, value, "period")
    if not period:
        raise TaggerError(f"period {value!r} is empty")
    return period


TICKET_COLUMNS = ("created_at", "helpdesk", "ticket_id", "stage", "sentiment", "stage_confidence",
                  "sentiment_confidence", "lang", "channel", "review", "ticket_url")


def _cell(value: Any) -> str:
    """A value as printed in a table or CSV: no control characters or ANSI escapes reach a terminal."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, bool):
        return "yes" if value else ""
    return "" if value is None else printable(value)


def format_tickets(rows: list[dict[str, Any]], fmt: str) -> str:
    """Rows as `table`, `json` (one object per line) or `csv`."""
    if fmt == "json":
        return "".join(json.dumps({k: (_cell(r[k]) if isinstance(r[k], dt.datetime) else r[k])
                                   for k in TICKET_COLUMNS}, ensure_ascii=False) + "\n" for r in rows)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(TICKET_COLUMNS)
        for r in rows:
            writer.writerow([_cell(r[k]) for k in TICKET_COLUMNS])
        return buf.getvalue()
    headers = ("when", "helpdesk", "ticket", "stage", "sentiment", "conf", "lang", "channel", "review", "link")
    body = [(_cell(r["created_at"]), _cell(r["helpdesk"]), _cell(r["ticket_id"]), _cell(r["stage"]),
             _cell(r["sentiment"]), f"{min(r['stage_confidence'], r['sentiment_confidence']):.2f}", _cell(r["lang"]),
             _cell(r["channel"]), _cell(bool(r["review"])), _cell(r.get("ticket_url"))) for r in rows]
    widths = [max([len(h)] + [len(str(b[i])) for b in body]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(b, widths, strict=True)).rstrip() for b in body]
    lines.append(f"({len(rows)} message{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines) + "\n"


def build_report(store: Store, *, period: dt.timedelta, until: dt.datetime | None = None, **filters) -> dict[str, Any]:
    """Counts of stage x sentiment in the period ending `until` (default now) and in the period before."""
    until = until or dt.datetime.now(dt.UTC)
    since = until - period
    current = store.stage_sentiment_counts(since=since, until=until, **filters)
    previous = store.stage_sentiment_counts(since=since - period, until=since, **filters)
    return {"since": since.isoformat(timespec="seconds"), "until": until.isoformat(timespec="seconds"),
            "current": current, "previous": previous}


def _trend(now: int, before: int) -> str:
    if before == 0:
        return "new" if now else "-"
    return f"{(now - before) / before:+.0%}"


def format_report(report: dict[str, Any]) -> str:
    cur, prev = report["current"], report["previous"]
    lines = [f"stage x sentiment, {report['since'][:16]} .. {report['until'][:16]} (UTC); "
             "in brackets: change against the previous period of the same length", ""]
    col = 18
    lines.append(f"{'stage':<8}" + "".join(f"{s:>{col}}" for s in (*SENTIMENTS, "total")))
    for stage in STAGES:
        cells = []
        for s in SENTIMENTS:
            cells.append(f"{cur[stage][s]} ({_trend(cur[stage][s], prev[stage][s])})")
        t_now, t_before = sum(cur[stage].values()), sum(prev[stage].values())
        cells.append(f"{t_now} ({_trend(t_now, t_before)})")
        lines.append(f"{stage:<8}" + "".join(f"{c:>{col}}" for c in cells))
    totals = [sum(cur[st][s] for st in STAGES) for s in SENTIMENTS]
    before = [sum(prev[st][s] for st in STAGES) for s in SENTIMENTS]
    cells = [f"{a} ({_trend(a, b)})" for a, b in zip(totals, before, strict=True)]
    cells.append(f"{sum(totals)} ({_trend(sum(totals), sum(before))})")
    lines.append(f"{'total':<8}" + "".join(f"{c:>{col}}" for c in cells))
    return "\n".join(lines) + "\n"
