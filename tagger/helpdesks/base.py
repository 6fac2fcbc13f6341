"""The one small interface every helpdesk adapter implements (see shared/DESIGN.md).

An adapter knows three things about its helpdesk and nothing else:
- `verify(headers, body, now)`: is this delivery really from the helpdesk? Raises `WebhookError(401)`.
- `parse(payload, headers)`: the webhook JSON -> a `Message` (or `None` for an event we deliberately ignore).
  Raises `WebhookError(4xx)` with a reason for payloads it cannot use.
- `write_tags(client, ticket_id, add, remove)`: put tags on the ticket through the helpdesk's API with the
  given `httpx.Client`, keeping every tag that is not ours. Raises `HelpdeskError` (with `status`,
  `retry_after` and `permanent`) so the worker can decide to retry.

Adapters get their API base URL and credentials from the environment (`TAGGER_<NAME>_URL`,
`TAGGER_<NAME>_TOKEN`, `TAGGER_<NAME>_SECRET`, ...), documented in each module and in the README.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx

from tagger.errors import HelpdeskError, WebhookError


@dataclass(frozen=True)
class Message:
    """One incoming customer message, as the tagger sees it whichever helpdesk sent it."""

    helpdesk: str
    ticket_id: str
    text: str
    event_id: str
    channel: str = "ticket"
    subject: str = ""
    event_type: str = ""
    tags: tuple[str, ...] = ()          # tags on the ticket at the time of the event (corrections, loops)
    url: str | None = None              # link to the ticket in the helpdesk's agent UI
    author: str | None = None
    lang: str | None = None             # language hint from the helpdesk, if it has one
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def full_text(self) -> str:
        """Subject and body, the way the classifier reads them."""
        return f"{self.subject}\n{self.text}".strip() if self.subject else self.text


@runtime_checkable
class Adapter(Protocol):
    name: ClassVar[str]

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None: ...

    def parse(self, payload: Any, headers: Mapping[str, str]) -> Message | None: ...

    def write_tags(self, client: httpx.Client, ticket_id: str, add: list[str], remove: list[str]) -> None: ...


def hmac_hex(secret: str, body: bytes, digest: str = "sha256") -> str:
    return hmac.new(secret.encode(), body, getattr(hashlib, digest)).hexdigest()


def constant_time_equal(a: str | bytes, b: str | bytes) -> bool:
    """Compare signatures without leaking timing."""
    a = a.encode() if isinstance(a, str) else a
    b = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a, b)


def raise_for_response(response: httpx.Response, what: str) -> None:
    """Turn a helpdesk error response into a `HelpdeskError` the worker understands.

    429 and 5xx are retryable (with `Retry-After` honoured when present); other 4xx are permanent.
    """
    if response.is_success:
        return
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    permanent = 400 <= status < 500 and status not in (408, 409, 423, 425, 429)
    raise HelpdeskError(f"{what}: HTTP {status} {response.text[:200]!r}", status=status,
                        retry_after=retry_after, permanent=permanent)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime
    import time

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def require(payload: Any, *path: str) -> Any:
    """`payload[path0][path1]...` or a 422 naming the missing field."""
    node = payload
    for i, key in enumerate(path):
        if not isinstance(node, Mapping) or key not in node or node[key] is None:
            raise WebhookError(422, f"missing field {'.'.join(path[: i + 1])}")
        node = node[key]
    return node


__all__ = ["Adapter", "Message", "HelpdeskError", "WebhookError", "hmac_hex", "constant_time_equal",
           "raise_for_response", "parse_retry_after", "require"]
