"""LiveAgent: a rule with the "HTTP request" action, tags through API v3.

Contract followed (documentation pages):
- Rules, the "Message added" / "Ticket created" triggers and the "HTTP request" action:
  https://support.liveagent.com/038465-Rules---Predefined-actions and
  https://support.liveagent.com/908400-Triggers-conditions-and-actions. The admin writes the JSON body of the
  request with the rule editor's variables (documented in docs/helpdesks.md); LiveAgent does not sign these
  requests, so a shared token is required (header `X-Tagger-Token` or `?token=` in the URL).
- API v3: https://support.liveagent.com/911737-API-v3 (generated reference and the official client,
  https://github.com/QualityUnit/LiveAgent-api-python): auth header `apikey: {key}`;
  `GET /api/v3/tags` lists tags (`{id, name}`), `POST /api/v3/tags` creates one, `GET /api/v3/tickets/{id}`
  returns the ticket with `tags` as a list of tag ids, `PUT /api/v3/tickets/{id}` with `{"tags": [ids]}` sets
  them (a replace), so we read first and send the union. Ticket `channel_type` codes (E email, B contact button,
  M contact form, I invitation, C call, W call button, F facebook, A facebook message, T twitter, Q forum,
  S suggestion) map to our channels.

The JSON body the admin pastes (also in docs/helpdesks.md; variable names as the rule editor inserts them):

    {
      "ticket_id": "{$conversation_id}",
      "subject": "{$conversation_subject}",
      "message": "{$message_body}",
      "channel": "{$conversation_channel_type}",
      "tags": "{$conversation_tags}",
      "author_role": "{$message_userType}",
      "message_id": "{$message_id}"
    }

Environment: TAGGER_LIVEAGENT_URL (https://{account}.ladesk.com), TAGGER_LIVEAGENT_API_KEY (API v3 key),
TAGGER_LIVEAGENT_SECRET (the shared token).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from tagger.errors import HelpdeskError, WebhookError
from tagger.helpdesks.base import (
    BaseAdapter,
    Message,
    as_text,
    channel_from,
    is_unrendered,
    quote_id,
    shared_token_ok,
    split_tags,
    stable_event_id,
    ticket_id_from,
)

#: Ticket `channel_type` codes of API v3 -> our channels.
CHANNEL_CODES = {"E": "ticket", "M": "ticket", "C": "ticket", "W": "ticket", "Q": "ticket", "S": "ticket",
                 "B": "chat", "I": "chat", "F": "social", "A": "social", "T": "social"}
#: Values of the author field that mean a customer wrote the message.
CUSTOMER_ROLES = {"customer", "visitor", "contact", "end-user", "enduser", "v", "c"}


def _usable(value: Any) -> str:
    text = as_text(value) or ""
    return "" if is_unrendered(text) or ("{$" in text and "}" in text) else text


class LiveAgentAdapter(BaseAdapter):
    name: ClassVar[str] = "liveagent"

    def __init__(self, *, base_url: str, api_key: str, **common: Any):
        super().__init__(base_url=base_url, **common)
        self._auth = {"apikey": api_key}

    @classmethod
    def from_env(cls, env: Mapping[str, str], **common: Any) -> LiveAgentAdapter:
        return cls(base_url=cls.env_value(env, "URL", why="the LiveAgent URL, https://{account}.ladesk.com"),
                   api_key=cls.env_value(env, "API_KEY", why="a LiveAgent API v3 key"),
                   secret=cls.env_value(env, "SECRET", required=False), **common)

    # -- webhook ----------------------------------------------------------------------------------------
    def verify(self, headers: Mapping[str, str], body: bytes, now: float,
               query: Mapping[str, str] | None = None) -> None:
        secret = self._require_secret()
        if not shared_token_ok(headers, query, secret):
            raise WebhookError(401, "LiveAgent does not sign requests: the shared token (X-Tagger-Token header "
                                    "or ?token=) is missing or wrong")

    def parse(self, payload: Any, headers: Mapping[str, str]) -> Message | None:
        if not isinstance(payload, Mapping):
            raise WebhookError(422, "payload must be a JSON object (see docs/helpdesks.md for the rule body)")
        raw_id = payload.get("ticket_id")
        if isinstance(raw_id, str) and "{$" in raw_id:
            raise WebhookError(422, f"field ticket_id holds an unrendered variable {raw_id[:60]!r}")
        ticket_id = ticket_id_from(raw_id, "ticket_id", numeric=False)
        if "message" not in payload:
            raise WebhookError(422, "missing field message")
        role = _usable(payload.get("author_role")).strip().lower()
        if role and role not in CUSTOMER_ROLES:
            return None                       # an agent's or system message
        text = as_text(payload.get("message"))
        if text is None:
            raise WebhookError(422, "field message must be a string")
        text = _usable(text)
        if not text.strip():
            return None
        channel_raw = _usable(payload.get("channel")).strip()
        channel = CHANNEL_CODES.get(channel_raw) or channel_from(channel_raw)
        message_id = _usable(payload.get("message_id"))
        tags = payload.get("tags")
        return Message(
            helpdesk=self.name, ticket_id=ticket_id, text=text,
            event_id=stable_event_id(self.name, ticket_id, message_id, _usable(payload.get("updated_at")), text),
            channel=channel, subject=_usable(payload.get("subject")),
            event_type=_usable(payload.get("event")) or "message_added",
            tags=split_tags(_usable(tags) if isinstance(tags, str) else tags),
            url=_usable(payload.get("url")) or None, meta={"channel": channel_raw, "message_id": message_id},
        )

    # -- API --------------------------------------------------------------------------------------------
    def _tag_ids(self, client: httpx.Client) -> dict[str, str]:
        data = self._json(self._send(client, "GET", self.api_url("/api/v3/tags"), "liveagent list tags",
                                     headers=self._auth), "liveagent list tags")
        if not isinstance(data, list):
            raise HelpdeskError("liveagent list tags: expected a JSON list", permanent=False)
        return {name: tag_id for t in data if isinstance(t, Mapping)
                and (name := as_text(t.get("name"))) and (tag_id := as_text(t.get("id")))}

    def write_tags(self, client: httpx.Client, ticket_id: str, add: list[str], remove: list[str]) -> None:
        what = f"liveagent ticket {ticket_id}"
        ids = self._tag_ids(client)
        for tag in dict.fromkeys(add):
            if tag not in ids:
                created = self._json(self._send(client, "POST", self.api_url("/api/v3/tags"),
                                                f"liveagent create tag {tag!r}", json={"name": tag},
                                                headers=self._auth), f"liveagent create tag {tag!r}")
                tag_id = as_text(created.get("id")) if isinstance(created, Mapping) else None
                if not tag_id:
                    raise HelpdeskError(f"liveagent create tag {tag!r}: no id in the response", permanent=False)
                ids[tag] = tag_id
        url = self.api_url(f"/api/v3/tickets/{quote_id(ticket_id)}")
        ticket = self._json(self._send(client, "GET", url, f"get {what}", headers=self._auth), f"get {what}")
        raw = ticket.get("tags") if isinstance(ticket, Mapping) else None
        current = [i for i in raw if isinstance(i, str)] if isinstance(raw, list) else []
        stale_ids = {ids[t] for t in self.own_only(remove) if t in ids and t not in add}
        wanted = [ids[t] for t in dict.fromkeys(add)]
        kept = [i for i in current if i not in stale_ids]
        merged = list(dict.fromkeys(kept + [i for i in wanted if i not in kept]))
        if merged == current:
            return
        self._send(client, "PUT", url, f"update tags of {what}", json={"tags": merged}, headers=self._auth)
