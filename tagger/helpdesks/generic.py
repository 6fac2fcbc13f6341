"""Generic: any helpdesk that can POST JSON to a URL and accept a tag update at another.

This is the one contract MOT Tagger defines itself (there is no product documentation to follow):

- Fields: `TAGGER_GENERIC_FIELDS` is a JSON object mapping our fields to paths in the webhook JSON, e.g.
  `{"ticket_id": "ticket.id", "text": "comment.body", "subject": "ticket.subject", "channel": "ticket.via",
  "tags": "ticket.tags", "event_id": "delivery_id"}`. A path is dotted (`a.b.0.c`, negative list indices allowed)
  or a JSON list (`["a", "b", 0]`). Fields: ticket_id and text (required), subject, channel, tags, event_id, url,
  event_type, author_role (if set, only messages whose role is a customer role are read). Unset fields default
  to the top-level key of the same name.
- Signing: `X-Tagger-Timestamp: <unix seconds>` and `X-Tagger-Signature: sha256=<hex HMAC-SHA256(secret,
  "{timestamp}." + raw body)>` (the timestamp is held to the replay window), or, for senders that cannot sign,
  the shared token in an `X-Tagger-Token` header, `Authorization: Bearer`, or `?token=`.
- Write-back: `TAGGER_GENERIC_WRITEBACK_URL` is a URL template with `{ticket_id}`; we send
  `TAGGER_GENERIC_WRITEBACK_METHOD` (default POST) with JSON `{"ticket_id": ..., "add": [...], "remove": [...]}`:
  the receiver adds `add` and removes `remove` (only ever tags this tool owns) and must keep all other tags.
  `TAGGER_GENERIC_TOKEN`, when set, is sent as `Authorization: Bearer {token}`.

- Set-up: the contract has no read-only endpoint (the write-back URL is the only one, and calling it changes tags),
  so `check` validates the configuration without a request, and `setup` returns `SetupStep("manual", ...)`:
  where to send the webhook, how to sign it, which fields, with a fresh secret when none is configured.

Environment: TAGGER_GENERIC_WRITEBACK_URL, TAGGER_GENERIC_FIELDS, TAGGER_GENERIC_SECRET, optional
TAGGER_GENERIC_TOKEN, TAGGER_GENERIC_WRITEBACK_METHOD, TAGGER_GENERIC_URL (base URL, used for nothing but display),
TAGGER_GENERIC_CUSTOMER_ROLES (comma separated, default customer,end-user,end_user,contact,visitor,requester).
"""
from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from tagger.errors import ConfigError, WebhookError
from tagger.helpdesks.contract import BaseAdapter, Message, SetupStep
from tagger.helpdesks.payload import (
    as_text,
    channel_from,
    get_in,
    quote_id,
    split_tags,
    stable_event_id,
    ticket_id_from,
)
from tagger.helpdesks.signing import TimestampedSha256

SIGNATURE_HEADER = "X-Tagger-Signature"
TIMESTAMP_HEADER = "X-Tagger-Timestamp"
FIELDS = ("ticket_id", "text", "subject", "channel", "tags", "event_id", "url", "event_type", "author_role")
DEFAULT_CUSTOMER_ROLES = ("customer", "end-user", "end_user", "contact", "visitor", "requester")


def parse_path(path: Any, field_name: str) -> tuple[str | int, ...]:
    """`"a.b.0"` or `["a", "b", 0]` -> ("a", "b", 0); a ConfigError for anything else."""
    parts: list[Any]
    if isinstance(path, str) and path.strip():
        parts = path.strip().split(".")
    elif isinstance(path, list) and path:
        parts = list(path)
    else:
        raise ConfigError(f"TAGGER_GENERIC_FIELDS: path of {field_name!r} must be a dotted string or a list")
    out: list[str | int] = []
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, str | int):
            raise ConfigError(f"TAGGER_GENERIC_FIELDS: bad path element {part!r} for {field_name!r}")
        if isinstance(part, str) and part.lstrip("-").isdigit():
            out.append(int(part))
        elif isinstance(part, str) and not part:
            raise ConfigError(f"TAGGER_GENERIC_FIELDS: empty path element for {field_name!r}")
        else:
            out.append(part)
    return tuple(out)


def parse_fields(raw: str | None) -> dict[str, tuple[str | int, ...]]:
    """TAGGER_GENERIC_FIELDS (JSON) -> field -> path, with defaults for the fields it leaves out."""
    mapping: Any = {}
    if raw:
        try:
            mapping = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"TAGGER_GENERIC_FIELDS is not valid JSON: {exc}") from exc
        if not isinstance(mapping, dict):
            raise ConfigError("TAGGER_GENERIC_FIELDS must be a JSON object of field -> path")
    unknown = set(mapping) - set(FIELDS)
    if unknown:
        raise ConfigError(f"TAGGER_GENERIC_FIELDS: unknown field(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(FIELDS)}")
    return {f: parse_path(mapping.get(f, f), f) for f in FIELDS}


class GenericAdapter(BaseAdapter):
    name: ClassVar[str] = "generic"

    def __init__(self, *, writeback_url: str, fields: dict[str, tuple[str | int, ...]] | None = None,
                 token: str | None = None, method: str = "POST", base_url: str = "",
                 customer_roles: tuple[str, ...] = DEFAULT_CUSTOMER_ROLES, **common: Any):
        super().__init__(base_url=base_url, **common)
        if "{ticket_id}" not in writeback_url:
            raise ConfigError("TAGGER_GENERIC_WRITEBACK_URL must contain {ticket_id}, e.g. "
                              "https://helpdesk.example.com/api/tickets/{ticket_id}/tags")
        if not writeback_url.startswith(("http://", "https://")):
            raise ConfigError("TAGGER_GENERIC_WRITEBACK_URL must be an http(s) URL")
        self.writeback_url = writeback_url
        self.fields = fields or parse_fields(None)
        self.method = method.upper()
        self.customer_roles = {r.strip().lower() for r in customer_roles if r.strip()}
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}

    @classmethod
    def from_env(cls, env: Mapping[str, str], **common: Any) -> GenericAdapter:
        roles = cls.env_value(env, "CUSTOMER_ROLES", required=False)
        return cls(writeback_url=cls.env_value(env, "WRITEBACK_URL",
                                               why="the tag write-back URL template with {ticket_id}"),
                   fields=parse_fields(cls.env_value(env, "FIELDS", required=False)),
                   token=cls.env_value(env, "TOKEN", required=False),
                   method=cls.env_value(env, "WRITEBACK_METHOD", default="POST"),
                   base_url=cls.env_value(env, "URL", default=""),
                   customer_roles=tuple(roles.split(",")) if roles else DEFAULT_CUSTOMER_ROLES,
                   secret=cls.env_value(env, "SECRET", required=False), **common)

    # -- webhook ----------------------------------------------------------------------------------------
    def scheme(self) -> TimestampedSha256:
        return TimestampedSha256(self._require_secret(), SIGNATURE_HEADER, TIMESTAMP_HEADER, self.tolerance_s,
                                 who="webhook")

    def _field(self, payload: Any, name: str) -> Any:
        return get_in(payload, *self.fields[name])

    def parse(self, payload: Any, headers: Mapping[str, str]) -> Message | None:
        if not isinstance(payload, Mapping | list):
            raise WebhookError(422, "payload must be a JSON object")
        ticket_id = ticket_id_from(self._field(payload, "ticket_id"), _dotted(self.fields["ticket_id"]),
                                   numeric=False)
        raw_text = self._field(payload, "text")
        if raw_text is None:
            raise WebhookError(422, f"missing field {_dotted(self.fields['text'])}")
        text = as_text(raw_text)
        if text is None:
            raise WebhookError(422, f"field {_dotted(self.fields['text'])} must be a string")
        role = (as_text(self._field(payload, "author_role")) or "").strip().lower()
        if role and role not in self.customer_roles:
            return None
        if not text.strip():
            return None
        event_id = as_text(self._field(payload, "event_id"))
        url = as_text(self._field(payload, "url"))
        return Message(
            helpdesk=self.name, ticket_id=ticket_id, text=text,
            event_id=f"generic:{event_id}" if event_id else stable_event_id(self.name, ticket_id, text),
            channel=channel_from(self._field(payload, "channel")),
            subject=as_text(self._field(payload, "subject")) or "",
            event_type=as_text(self._field(payload, "event_type")) or "message",
            tags=split_tags(self._field(payload, "tags")),
            url=url if url and url.startswith(("http://", "https://")) else None,
        )

    # -- API --------------------------------------------------------------------------------------------
    def write_tags(self, client: httpx.Client, ticket_id: str, add: list[str], remove: list[str]) -> None:
        url = self.writeback_url.replace("{ticket_id}", quote_id(ticket_id))
        body = {"ticket_id": ticket_id, "add": list(dict.fromkeys(add)),
                "remove": [t for t in self.own_only(remove) if t not in add]}
        self._send(client, self.method, url, f"generic write-back for ticket {ticket_id}", json=body,
                   headers=self._auth)


    # -- set-up -------------------------------------------------------------------------------------------
    def _field_map(self) -> str:
        return ", ".join(f"{name} <- {_dotted(path)}" for name, path in self.fields.items()
                         if name in ("ticket_id", "text", "author_role", "tags", "event_id"))

    def check(self, client: httpx.Client) -> list[SetupStep]:
        """No request: the generic contract has no read-only endpoint (a write-back call would change tags).
        Reports what is configured and what is missing."""
        steps = [SetupStep("ok", "generic configuration",
                           f"write-back {self.method} {self.writeback_url}"
                           + (" with a bearer token" if self._auth else " without a token")
                           + f"; fields {self._field_map()}; not contacted (no read-only call in this contract)")]
        if not self.secret:
            steps.append(SetupStep("missing", "TAGGER_GENERIC_SECRET",
                                   "deliveries are refused (401) until a secret is set (`tagger setup generic`)"))
        return steps

    def setup(self, client: httpx.Client, webhook_url: str) -> list[SetupStep]:
        """What the sending system must do, exactly: the URL, the signature (or token) and the JSON fields."""
        secret = self.secret or secrets.token_urlsafe(32)
        env = {} if self.secret else {"TAGGER_GENERIC_SECRET": secret}
        shown = secret if not self.secret else "<the value of TAGGER_GENERIC_SECRET>"
        fields = {name: _dotted(path) for name, path in self.fields.items()}
        detail = (f"have your system POST each new customer message as JSON to {webhook_url} with the headers "
                  f"X-Tagger-Timestamp: <unix seconds> and X-Tagger-Signature: sha256=<hex HMAC-SHA256({shown}, "
                  f"\"<timestamp>.\" + body)> (or, if it cannot sign, X-Tagger-Token: {shown}). The body must hold "
                  f"these fields (TAGGER_GENERIC_FIELDS, path in the body): {json.dumps(fields)}; include the ticket's "
                  "current tags (so an agent's change of ours is kept and recorded as a correction) and send only "
                  "customers' messages, or author_role so the others are ignored. Your endpoint "
                  f"{self.method} {self.writeback_url} receives {{\"ticket_id\", \"add\", \"remove\"}} and must keep "
                  "every other tag (docs/helpdesks.md, Generic).")
        return [*self.prepare(client), SetupStep("manual", f"webhook {webhook_url}", detail, env=env)]


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in path)
