"""The one interface every helpdesk adapter implements (see shared/DESIGN.md), and what adapters share.

`Adapter` is the whole contract, member by member; `BaseAdapter` implements its optional part and the
machinery adapters share (credentials from the environment, which tags are ours, API calls that raise
`HelpdeskError`). To add a helpdesk, subclass `BaseAdapter`, implement `name`, `from_env`, `scheme` (or
`verify`), `parse` and `write_tags`, and register the class in `tagger.helpdesks.ADAPTERS`;
`tagger/helpdesks/freshdesk.py` is a short example (shared token, a union tag write, a listing API). The verification schemes are in
`tagger.helpdesks.signing`, the payload helpers (`get_in`, `as_text`, `ticket_id_from`, ...) in
`tagger.helpdesks.payload`.

Adapters get their API base URL and credentials from the environment (`TAGGER_<NAME>_URL`,
`TAGGER_<NAME>_TOKEN`, `TAGGER_<NAME>_SECRET`, ...), documented in each module and in docs/helpdesks.md; the
settings they share (replay window, tag prefixes) come from `tagger.config.Settings`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import httpx

from tagger.errors import ConfigError, HelpdeskError, WebhookError

if TYPE_CHECKING:
    from tagger.helpdesks.signing import Scheme


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
    """A helpdesk, as the service, the worker, the backfill and `tagger setup` / `tagger doctor` see it.

    Required: `name`, `from_env`, `verify`, `parse`, `write_tags`. Optional (`BaseAdapter` implements them; the
    docstrings say how): `content_types`, `list_tickets`, `payload_has_tags`, `read_tags`, `prepare`, `check`,
    `setup`. An adapter loaded with `--adapter MODULE:FACTORY` that does not subclass `BaseAdapter` needs at
    least `name`, `verify`, `parse` and `write_tags` (its factory takes the place of `from_env`).

    Errors: `verify` and `parse` raise `WebhookError(status, reason)`, which the service answers as is;
    everything that calls the helpdesk's API raises `HelpdeskError` (with `status`, `retry_after` and
    `permanent`, so the worker can decide to retry) or `ConfigError` with the exact fix.
    """

    #: The helpdesk's name: the `<name>` of `/webhooks/<name>`, of `TAGGER_<NAME>_*` and of `Message.helpdesk`.
    name: ClassVar[str]

    #: The media types the webhook accepts (besides any `application/*+json`); others are answered 415.
    #: BaseAdapter: `("application/json",)`.
    content_types: ClassVar[tuple[str, ...]]

    #: Whether the webhook payload carries the ticket's current tags. When False the service asks `read_tags`
    #: before deciding whether an agent changed ours (a correction). BaseAdapter: True.
    payload_has_tags: ClassVar[bool]

    @classmethod
    def from_env(cls, env: Mapping[str, str], **common: Any) -> Adapter:
        """Build the adapter from its `TAGGER_<NAME>_*` variables in `env` (API base URL, credentials, webhook
        secret). `common` is what every adapter shares, from `Settings`: `tolerance_s` (the replay window),
        `stage_prefix` and `sentiment_prefix` (which tags are ours). Raises `ConfigError` naming the variable
        that is missing or wrong."""
        ...

    def verify(self, headers: Mapping[str, str], body: bytes, now: float,
               query: Mapping[str, str] | None = None) -> None:
        """Is this delivery really from the helpdesk? `body` is the raw request body, `now` epoch seconds,
        `query` the request's query parameters (only read where the helpdesk cannot sign or send a header, and
        then carries a shared token, `?token=...`). Returns None, or raises `WebhookError(401, reason)`.
        BaseAdapter: `self.scheme().verify(headers, body, now, query)`, with one of the schemes of
        `tagger.helpdesks.signing`."""
        ...

    def parse(self, payload: Any, headers: Mapping[str, str]) -> Message | None:
        """The decoded webhook JSON -> the customer's `Message`, or None for an event with nothing to classify.
        Raises `WebhookError(422, reason)` for a payload it cannot use and `WebhookError(200, reason)` for an
        event it deliberately ignores (an agent's reply, an internal note, a status change)."""
        ...

    def write_tags(self, client: httpx.Client, ticket_id: str, add: list[str], remove: list[str]) -> None:
        """Put `add` on the ticket and take `remove` (only ever tags of ours) off it, through the helpdesk's API
        with the given `httpx.Client`, keeping every tag that is not ours (APIs that replace the whole list get
        the union). Raises `HelpdeskError`."""
        ...

    def list_tickets(self, client: httpx.Client, cursor: str | None, since: float | None) -> TicketPage:
        """For `tagger backfill --helpdesk NAME`: one `TicketPage` of the helpdesk's ticket history (oldest
        change first where the API allows), from the opaque `cursor` of the previous page (None: the first),
        tickets changed since epoch second `since` (None: all). The page's `next_cursor` is what a resumed
        backfill starts from. BaseAdapter: raises `ConfigError` (no listing API: export the tickets instead)."""
        ...

    def read_tags(self, client: httpx.Client, ticket_id: str) -> tuple[str, ...]:
        """The ticket's current tags (labels), read from the API: asked when `payload_has_tags` is False.
        BaseAdapter: raises `ConfigError` (not supported)."""
        ...

    def prepare(self, client: httpx.Client) -> list[SetupStep]:
        """Make sure the helpdesk can show and keep our tags (creates Chatwoot labels, Zammad tags...),
        idempotently, and return the steps taken; raise `ConfigError` with the exact fix when it cannot. Run by
        `tagger setup` and at start-up. BaseAdapter: nothing to do, `[]`."""
        ...

    def check(self, client: httpx.Client) -> list[SetupStep]:
        """For `tagger doctor`: prove the API is reachable and the credentials work, and say whether our labels
        exist, without changing anything. BaseAdapter: one `manual` step saying no check is implemented."""
        ...

    def setup(self, client: httpx.Client, webhook_url: str) -> list[SetupStep]:
        """For `tagger setup`: `prepare`, then create (or find) the webhook pointing at `webhook_url` with a
        fresh secret, and the trigger that fires it, where the API allows; where it does not, `manual` steps
        that say exactly what to click and paste. A step carrying a secret the admin must configure says so in
        `env` (`{"TAGGER_ZENDESK_SECRET": "..."}`). BaseAdapter: `prepare`, then a `manual` webhook step."""
        ...


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


class BaseAdapter:
    """What every adapter shares: base URL, webhook secret, replay tolerance, and which tags are ours; the
    optional part of `Adapter` with its defaults.

    Subclasses implement `from_env`, `scheme` (or `verify`), `parse` and `write_tags`.
    """

    name: ClassVar[str] = ""
    content_types: ClassVar[tuple[str, ...]] = ("application/json",)
    payload_has_tags: ClassVar[bool] = True

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
    def scheme(self) -> Scheme:
        """How this helpdesk's deliveries are authenticated: a scheme of `tagger.helpdesks.signing` holding the
        configured secret (`WebhookError(401)` when none is configured). Its `sign` is what the helpdesk sends."""
        raise NotImplementedError

    def verify(self, headers: Mapping[str, str], body: bytes, now: float,
               query: Mapping[str, str] | None = None) -> None:
        self.scheme().verify(headers, body, now, query)

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


__all__ = ["Message", "TicketPage", "SetupStep", "Adapter", "BaseAdapter", "raise_for_response", "parse_retry_after",
           "HelpdeskError", "WebhookError"]
