"""Reading helpdesk payloads: the helpers every adapter's `parse` and `list_tickets` share.

Webhook JSON is written by helpdesk admins with placeholders, so any field may be missing, of the wrong type or
an unrendered `{{placeholder}}`. These helpers never trust a field: `get_in` and `as_text` return None instead of
raising, `require` and `ticket_id_from` raise a `WebhookError(422)` that names the field.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from tagger.errors import WebhookError
from tagger.helpdesks.contract import Message

_SOCIAL_WORDS = ("facebook", "instagram", "twitter", "tweet", "x_dm", "linkedin", "tiktok", "youtube", "social")
_CHAT_WORDS = ("chat", "messag", "widget", "sdk", "whatsapp", "sms", "telegram", "wechat", "viber",
               "sunshine", "livechat", "web_widget")


def get_header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively, whether `headers` is Starlette's `Headers` or a plain dict."""
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == lowered), None)
    return value if isinstance(value, str) else None


def require(payload: Any, *path: str) -> Any:
    """`payload[path0][path1]...` or a 422 naming the missing field."""
    node = payload
    for i, key in enumerate(path):
        if not isinstance(node, Mapping) or key not in node or node[key] is None:
            raise WebhookError(422, f"missing field {'.'.join(path[: i + 1])}")
        node = node[key]
    return node


def get_in(node: Any, *path: str | int) -> Any:
    """`node[p0][p1]...` or None when any step is missing or of the wrong type (never raises)."""
    for key in path:
        if isinstance(key, int) and isinstance(node, list):
            if not -len(node) <= key < len(node):
                return None
            node = node[key]
        elif isinstance(node, Mapping):
            node = node.get(str(key) if isinstance(key, int) else key)
        else:
            return None
        if node is None:
            return None
    return node


def as_text(value: Any) -> str | None:
    """A scalar as text (numbers as their decimal form); None for missing, bool, lists and objects."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    return None


_PLACEHOLDER = re.compile(r"\s*\{\{\s*[A-Za-z_][\w.\[\]-]*\s*(\|[^{}]*)?\}\}\s*")


def is_unrendered(value: str) -> bool:
    """True when a field is wholly a helpdesk placeholder that reached us unrendered (`{{ticket.id}}`,
    `{{ticket.title | upcase}}`): a misconfigured body. Text that merely contains braces, such as a
    customer quoting a broken template ("your e-mail shows {{customer.first_name}}"), is text."""
    return bool(_PLACEHOLDER.fullmatch(value))


_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


def ticket_id_from(value: Any, field_name: str, *, numeric: bool = True) -> str:
    """A ticket id fit for an API path, or a 422 that names the field."""
    text = as_text(value)
    if text is None or not text.strip():
        raise WebhookError(422, f"missing field {field_name}")
    text = text.strip()
    if is_unrendered(text):
        raise WebhookError(422, f"field {field_name} holds an unrendered placeholder {text[:60]!r}: "
                                "check the webhook body configured in the helpdesk")
    if numeric and not (text.isascii() and text.isdigit()):
        raise WebhookError(422, f"field {field_name} must be a numeric ticket id, got {text[:60]!r}")
    if not _ID_RE.match(text):
        raise WebhookError(422, f"field {field_name} is not a valid ticket id: {text[:60]!r}")
    return text


def quote_id(ticket_id: str) -> str:
    """A ticket id as one URL path segment (ids are validated in parse; this is belt and braces)."""
    from urllib.parse import quote

    return quote(str(ticket_id), safe="")


def split_tags(value: Any) -> tuple[str, ...]:
    """Tags from a list (of strings or `{name|tag: ...}` objects) or from a comma/space separated string."""
    items: list[str] = []
    if isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping):
                item = item.get("name", item.get("tag"))
            text = as_text(item)
            if text and text.strip():
                items.append(text.strip())
    elif isinstance(value, str) and not is_unrendered(value):
        parts = value.split(",") if "," in value else value.split()
        items = [p.strip() for p in parts if p.strip()]
    return tuple(dict.fromkeys(items))


def channel_from(*values: Any, default: str = "ticket") -> str:
    """Map a helpdesk's channel/via/source value to `ticket`, `chat` or `social` by keyword."""
    for value in values:
        text = (as_text(value) or "").lower()
        if not text:
            continue
        if text in ("ticket", "chat", "social"):
            return text
        if any(word in text for word in _SOCIAL_WORDS):
            return "social"
        if any(word in text for word in _CHAT_WORDS):
            return "chat"
    return default


def stable_event_id(helpdesk: str, *parts: Any) -> str:
    """A delivery id for helpdesks that send none: the same event always hashes to the same id (dedupe)."""
    digest = hashlib.sha256("\x1f".join("" if p is None else str(p) for p in parts).encode()).hexdigest()
    return f"{helpdesk}:{digest[:40]}"


def history_message(helpdesk: str, ticket_id: str, text: str, *, subject: str = "", channel: str = "ticket",
                    tags: tuple[str, ...] = (), url: str | None = None, updated: str = "", writable: bool = True,
                    **meta: Any) -> Message:
    """A ticket read from a helpdesk's listing API (backfill), as a `Message`. Its event id depends on the
    ticket, its update time and its text only, so listing the same ticket twice gives the same id."""
    return Message(helpdesk=helpdesk, ticket_id=ticket_id, text=text,
                   event_id=stable_event_id(helpdesk, "backfill", ticket_id, updated, text),
                   channel=channel, subject=subject, event_type="backfill", tags=tuple(tags), url=url,
                   meta={"writable": writable, "updated_at": updated, **meta})


def iso_utc(epoch: float) -> str:
    """Epoch seconds as `2024-01-31T00:00:00Z`, the form the listing APIs take."""
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["get_header", "require", "get_in", "as_text", "is_unrendered", "ticket_id_from", "quote_id", "split_tags",
           "channel_from", "stable_event_id", "history_message", "iso_utc"]
