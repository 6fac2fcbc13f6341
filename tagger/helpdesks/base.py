"""The one small interface every helpdesk adapter implements (see shared/DESIGN.md).

An adapter knows three things about its helpdesk and nothing else:
- `verify(headers, body, now, query=None)`: is this delivery really from the helpdesk? Raises `WebhookError(401)`.
  `query` (the request's query parameters) is optional; it is only read by adapters whose helpdesk cannot sign
  or send a header, and then carries a shared token (`?token=...`).
- `parse(payload, headers)`: the webhook JSON -> a `Message` (or `None` for an event we deliberately ignore).
  Raises `WebhookError(4xx)` with a reason for payloads it cannot use.
- `write_tags(client, ticket_id, add, remove)`: put tags on the ticket through the helpdesk's API with the
  given `httpx.Client`, keeping every tag that is not ours. Raises `HelpdeskError` (with `status`,
  `retry_after` and `permanent`) so the worker can decide to retry.
- optional, for `tagger backfill --helpdesk NAME`: `list_tickets(client, cursor, since)` returns one `TicketPage`
  of the helpdesk's ticket history (oldest change first where the API allows) and the opaque cursor of the next
  page; the cursor is what a resumed backfill starts from.
- optional, for agents' corrections: `read_tags(client, ticket_id)` returns the ticket's current tags (labels)
  from the API. Adapters whose webhook payload does not carry the ticket's tags set `payload_has_tags = False`;
  the service then reads them before deciding whether an agent changed ours.
- optional, for `tagger setup` / `tagger doctor` and start-up: `prepare(client)` makes sure the helpdesk can
  show and keep our tags (creates Chatwoot labels, Zammad tags...), idempotently, and returns the `SetupStep`s
  it took; it raises `ConfigError` with the exact fix when it cannot. `check(client)` proves the API is
  reachable and the credentials work and says whether our labels exist, without changing anything.
  `setup(client, webhook_url)` does `prepare`, then creates (or finds) the webhook pointing at `webhook_url`
  with a fresh secret, and the trigger that fires it, where the API allows; where it does not, it returns
  `SetupStep("manual", ...)` steps that say exactly what to click and paste. A step that carries a secret the
  admin must configure says so in `env` (`{"TAGGER_ZENDESK_SECRET": "..."}`).

Adapters get their API base URL and credentials from the environment (`TAGGER_<NAME>_URL`,
`TAGGER_<NAME>_TOKEN`, `TAGGER_<NAME>_SECRET`, ...), documented in each module and in the README.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx

from tagger.errors import ConfigError, HelpdeskError, WebhookError


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


@dataclass(frozen=True)
class TicketPage:
    """One page of a helpdesk's ticket history: the messages to classify (one per ticket, the text the webhook
    path would classify where the listing carries it), how many listed tickets had nothing to classify, and
    the cursor of the next page (None: this was the last one). `Message.meta["writable"]` is False for a
    ticket the helpdesk no longer lets anyone change (e.g. Zendesk's closed tickets)."""

    messages: list[Message]
    next_cursor: str | None
    skipped: int = 0


@dataclass(frozen=True)
class SetupStep:
    """One thing `prepare`/`check`/`setup` did or found: `action` is `created`, `exists`, `updated`, `ok`,
    `missing` or `manual`; `what` names it ("label mot_smot", "webhook https://.../webhooks/zammad"); `detail`
    says more (for `manual`: exactly what to click and paste); `env` holds settings the admin must set."""

    action: str
    what: str
    detail: str = ""
    env: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Adapter(Protocol):
    name: ClassVar[str]

    def verify(self, headers: Mapping[str, str], body: bytes, now: float,
               query: Mapping[str, str] | None = None) -> None: ...

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
    import time
    from email.utils import parsedate_to_datetime

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


# ---------------------------------------------------------------------------------------------------------
# Shared machinery of the adapters (added with the adapters; nothing above was renamed).
# ---------------------------------------------------------------------------------------------------------

DEFAULT_TOKEN_HEADER = "X-Tagger-Token"
DEFAULT_TOKEN_PARAM = "token"

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


def hmac_digest(secret: str, message: bytes, digest: str = "sha256") -> bytes:
    return hmac.new(secret.encode(), message, getattr(hashlib, digest)).digest()


def hmac_b64(secret: str, message: bytes, digest: str = "sha256") -> str:
    """base64(HMAC(secret, message)), the form Zendesk and Help Scout put in their signature headers."""
    return base64.b64encode(hmac_digest(secret, message, digest)).decode()


def check_timestamp(timestamp: float, now: float, tolerance_s: float) -> None:
    """Refuse a signed timestamp outside `now ± tolerance_s` (a replayed or badly delayed delivery)."""
    if abs(now - timestamp) > tolerance_s:
        raise WebhookError(401, f"signature timestamp is {int(now - timestamp)} s away from now "
                                f"(tolerance {int(tolerance_s)} s): stale or replayed delivery")


def verify_timestamped_sha256(headers: Mapping[str, str], body: bytes, now: float, query: Mapping[str, str] | None,
                              *, secret: str, signature_header: str, timestamp_header: str, tolerance_s: float,
                              who: str = "webhook") -> None:
    """The `sha256=<hex HMAC-SHA256(secret, "{timestamp}." + body)>` scheme with a signed timestamp held to
    the replay window (Chatwoot's, and our generic adapter's); senders that cannot sign may send the shared
    token instead (`X-Tagger-Token`, `Authorization: Bearer` or `?token=`)."""
    signature = get_header(headers, signature_header)
    if signature is None:
        if shared_token_ok(headers, query, secret):
            return
        raise WebhookError(401, f"no {signature_header} and no shared token (X-Tagger-Token or ?token=)")
    timestamp = (get_header(headers, timestamp_header) or "").strip()
    algo, _, digest = signature.strip().partition("=")
    if algo.lower() != "sha256" or not digest or not timestamp:
        raise WebhookError(401, f"malformed {signature_header} (sha256=<hex>) or missing {timestamp_header}")
    if not constant_time_equal(hmac_hex(secret, timestamp.encode() + b"." + body), digest.lower()):
        raise WebhookError(401, f"{who} signature does not match")
    try:
        ts = float(timestamp)
    except ValueError as exc:
        raise WebhookError(401, f"unreadable {timestamp_header}: {timestamp[:40]!r}") from exc
    check_timestamp(ts, now, tolerance_s)


def basic_auth_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header, or None."""
    value = get_header(headers, "Authorization") or ""
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def shared_token_ok(headers: Mapping[str, str], query: Mapping[str, str] | None, secret: str, *,
                    header: str = DEFAULT_TOKEN_HEADER, param: str = DEFAULT_TOKEN_PARAM,
                    basic: bool = False) -> bool:
    """True when the shared token arrived in the header, the query string or (if `basic`) HTTP Basic auth.

    For helpdesks that cannot sign their webhooks. Every comparison is constant-time.
    """
    candidates: list[str] = []
    value = get_header(headers, header)
    if value:
        candidates.append(value)
    auth = get_header(headers, "Authorization") or ""
    if auth[:7].lower() == "bearer ":
        candidates.append(auth[7:].strip())
    if query is not None:
        token = query.get(param)
        if isinstance(token, str) and token:
            candidates.append(token)
    if basic:
        creds = basic_auth_credentials(headers)
        if creds:
            candidates.extend(c for c in creds if c)
    ok = False
    for candidate in candidates:
        ok |= constant_time_equal(candidate, secret)   # no short-circuit: same work for every candidate
    return ok


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


class BaseAdapter:
    """What every adapter shares: base URL, webhook secret, replay tolerance, and which tags are ours.

    Subclasses implement `verify`, `parse`, `write_tags` and `from_env`.
    """

    name: ClassVar[str] = ""

    def __init__(self, *, base_url: str, secret: str | None = None, tolerance_s: float = 300.0,
                 stage_prefix: str = "mot_", sentiment_prefix: str = "sentiment_"):
        self.base_url = base_url.rstrip("/")
        self.secret = secret or None
        self.tolerance_s = float(tolerance_s)
        self.stage_prefix = stage_prefix
        self.sentiment_prefix = sentiment_prefix

    def __repr__(self) -> str:   # never print the secret or credentials
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    # -- configuration --------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str], **common: Any) -> BaseAdapter:
        """Build the adapter from `TAGGER_<NAME>_*` variables; `common` is what `get_adapter` shares."""
        raise NotImplementedError

    @classmethod
    def env_value(cls, env: Mapping[str, str], suffix: str, *, required: bool = True,
                  default: str | None = None, why: str = "") -> str | None:
        """`TAGGER_<NAME>_<SUFFIX>` from `env`; a `ConfigError` naming the variable when required and unset."""
        key = f"TAGGER_{cls.name.upper()}_{suffix}"
        value = (env.get(key) or "").strip()
        if value:
            return value
        if required and default is None:
            raise ConfigError(f"{key} is not set{': ' + why if why else ''}")
        return default

    # -- webhook side ---------------------------------------------------------------------------------
    def _require_secret(self) -> str:
        if not self.secret:
            raise WebhookError(401, f"no webhook secret configured: set TAGGER_{self.name.upper()}_SECRET")
        return self.secret

    # -- API side -------------------------------------------------------------------------------------
    def is_own(self, tag: str) -> bool:
        from tagger.labels import is_own_tag

        return is_own_tag(tag, stage_prefix=self.stage_prefix, sentiment_prefix=self.sentiment_prefix)

    def own_only(self, tags: list[str]) -> list[str]:
        """The tags of `tags` this tool manages: we never remove anyone else's."""
        return [t for t in dict.fromkeys(tags) if self.is_own(t)]

    def merged_tags(self, current: list[str], add: list[str], remove: list[str]) -> list[str]:
        """Union semantics for replace-style APIs: keep every current tag except our stale ones, add ours."""
        stale = set(self.own_only(remove)) - set(add)
        kept = [t for t in current if t not in stale]
        return list(dict.fromkeys(kept + [t for t in add if t not in kept]))

    def api_url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def list_tickets(self, client: httpx.Client, cursor: str | None, since: float | None) -> TicketPage:
        """One page of ticket history for `tagger backfill --helpdesk` (`since`: epoch seconds, None for all).
        Adapters whose helpdesk has a listing API override this."""
        raise ConfigError(f"backfill from the {self.name} API is not supported yet: export the tickets as JSONL "
                          "or CSV and run `tagger backfill EXPORT -o OUT`")

    #: whether the webhook payload carries the ticket's current tags; False: `read_tags` is asked instead
    payload_has_tags: ClassVar[bool] = True

    def read_tags(self, client: httpx.Client, ticket_id: str) -> tuple[str, ...]:
        """The ticket's current tags, read from the API (for corrections when the payload has none)."""
        raise ConfigError(f"reading a ticket's tags from the {self.name} API is not supported")

    def own_tag_names(self) -> list[str]:
        """Every tag this tool may write, under the configured prefixes (what `prepare` must make exist)."""
        from tagger.labels import SENTIMENTS, STAGES, review_tag, sentiment_tag, stage_tag

        return ([stage_tag(s, self.stage_prefix) for s in STAGES] + [sentiment_tag(s, self.sentiment_prefix)
                                                                     for s in SENTIMENTS]
                + [review_tag(self.stage_prefix)])

    def prepare(self, client: httpx.Client) -> list[SetupStep]:
        """Make the helpdesk able to show and keep our tags (idempotent). Nothing is needed by default."""
        return []

    def check(self, client: httpx.Client) -> list[SetupStep]:
        """Reachable, authorised, labels present: read-only. Adapters override with a cheap authenticated call."""
        return [SetupStep("manual", f"{self.name} API", "no read-only check implemented for this helpdesk")]

    def setup(self, client: httpx.Client, webhook_url: str) -> list[SetupStep]:
        """`prepare`, then the webhook and its trigger where the API allows; else what to do by hand."""
        return [*self.prepare(client),
                SetupStep("manual", f"webhook {webhook_url}",
                          f"create the webhook by hand as docs/helpdesks.md ({self.name}) describes, pointing at "
                          f"{webhook_url}")]

    def _send(self, client: httpx.Client, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        """One API call; transport failures and error statuses become `HelpdeskError` (retry decided there)."""
        try:
            response = client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise HelpdeskError(f"{what}: {type(exc).__name__}: {exc}", status=None, permanent=False) from exc
        raise_for_response(response, what)
        return response

    @staticmethod
    def _json(response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise HelpdeskError(f"{what}: response is not JSON: {response.text[:200]!r}",
                                status=response.status_code, permanent=False) from exc


def quote_id(ticket_id: str) -> str:
    """A ticket id as one URL path segment (ids are validated in parse; this is belt and braces)."""
    from urllib.parse import quote

    return quote(str(ticket_id), safe="")


__all__ = ["SetupStep", "Adapter", "Message", "TicketPage", "HelpdeskError", "WebhookError", "hmac_hex", "constant_time_equal",
           "raise_for_response", "parse_retry_after", "require", "BaseAdapter", "get_header", "hmac_digest",
           "hmac_b64", "check_timestamp", "basic_auth_credentials", "shared_token_ok", "stable_event_id",
           "get_in", "as_text", "history_message", "iso_utc", "is_unrendered", "ticket_id_from", "split_tags", "channel_from", "quote_id",
           "DEFAULT_TOKEN_HEADER", "DEFAULT_TOKEN_PARAM"]
