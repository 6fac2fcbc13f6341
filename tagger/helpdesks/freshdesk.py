"""Freshdesk: an automation rule's "Trigger webhook" action, tags through the Tickets API.

Contract followed (documentation pages):
- Automation webhooks (request type, "Requires authentication", custom headers, JSON encoding, Advanced content
  with placeholders): https://support.freshdesk.com/support/solutions/articles/132589-using-webhooks-in-automation-rules
  Placeholders such as `{{ticket.id}}`, `{{ticket.latest_public_comment}}`, `{{triggered_event}}` (rendered like
  `{ticket_action:created}`, `{note_type:public}`, `{status:{from:2,to:3}}`) are those Freshdesk lists in the
  rule editor; the same body shape is used by Zulip's Freshdesk integration
  (https://github.com/zulip/zulip/blob/main/zerver/webhooks/freshdesk/doc.md).
- Freshdesk does not sign webhooks: we accept a shared token, sent by "Requires authentication" (HTTP Basic,
  the token as password or as API key), by a custom header `X-Tagger-Token`, or as `?token=` in the URL.
- Tags: https://developers.freshdesk.com/api/#update_ticket -- `PUT /api/v2/tickets/{id}` with `{"tags": [...]}`
  REPLACES the ticket's tags, so we `GET /api/v2/tickets/{id}` (https://developers.freshdesk.com/api/#view_a_ticket)
  first and send the union (everyone else's tags kept, only our stale ones dropped).
- Auth: https://developers.freshdesk.com/api/#authentication -- HTTP Basic with the API key as user, `X` as password.
- History (`tagger backfill --helpdesk freshdesk`): List All Tickets, https://developers.freshdesk.com/api/#list_all_tickets
  -- `GET /api/v2/tickets?updated_since=...&order_by=updated_at&order_type=asc&per_page=100&page=N&include=description`
  (without `updated_since` only the last 30 days are listed; `include=description` adds `description_text`);
  the `link` header carries `rel="next"` while more pages exist; page numbers stop at 300, so after page 300 the
  listing starts again from the last ticket's `updated_at` (tickets seen at that second are not repeated).
- Rate limits: 429 with `Retry-After` (https://developers.freshdesk.com/api/#ratelimit).

The JSON body the admin pastes (Encoding: JSON, Content: Advanced), also in docs/helpdesks.md:

    {
      "ticket_id": "{{ticket.id}}",
      "subject": "{{ticket.subject}}",
      "description": "{{ticket.description}}",
      "latest_public_comment": "{{ticket.latest_public_comment}}",
      "source": "{{ticket.source}}",
      "tags": "{{ticket.tags}}",
      "url": "{{ticket.url}}",
      "triggered_event": "{{triggered_event}}"
    }

Environment: TAGGER_FRESHDESK_URL (https://{domain}.freshdesk.com), TAGGER_FRESHDESK_API_KEY,
TAGGER_FRESHDESK_SECRET (the shared token).
"""
from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from tagger.errors import HelpdeskError, WebhookError
from tagger.helpdesks.base import (
    BaseAdapter,
    Message,
    TicketPage,
    as_text,
    channel_from,
    get_in,
    history_message,
    is_unrendered,
    iso_utc,
    quote_id,
    shared_token_ok,
    split_tags,
    stable_event_id,
    ticket_id_from,
)

#: `source` codes of the Tickets API (https://developers.freshdesk.com/api/#tickets) -> our channels.
SOURCE_CODES = {"1": "ticket", "2": "ticket", "3": "ticket", "7": "chat", "9": "ticket", "10": "ticket"}
#: `{{ticket.source}}` renders the source's name; the feedback widget is a web form, not a chat.
SOURCE_NAMES = {"feedback widget": "ticket", "portal": "ticket", "email": "ticket", "phone": "ticket",
                "outbound email": "ticket"}


def _usable(value: Any) -> str:
    text = as_text(value) or ""
    return "" if is_unrendered(text) else text


class FreshdeskAdapter(BaseAdapter):
    name: ClassVar[str] = "freshdesk"
    #: List All Tickets: the largest page number the API serves, and tickets per page (its maximum).
    max_page: ClassVar[int] = 300
    per_page: ClassVar[int] = 100

    def __init__(self, *, base_url: str, api_key: str, **common: Any):
        super().__init__(base_url=base_url, **common)
        basic = base64.b64encode(f"{api_key}:X".encode()).decode()
        self._auth = {"Authorization": f"Basic {basic}"}

    @classmethod
    def from_env(cls, env: Mapping[str, str], **common: Any) -> FreshdeskAdapter:
        return cls(base_url=cls.env_value(env, "URL", why="the Freshdesk URL, https://{domain}.freshdesk.com"),
                   api_key=cls.env_value(env, "API_KEY", why="a Freshdesk API key (Profile settings)"),
                   secret=cls.env_value(env, "SECRET", required=False), **common)

    # -- webhook ----------------------------------------------------------------------------------------
    def verify(self, headers: Mapping[str, str], body: bytes, now: float,
               query: Mapping[str, str] | None = None) -> None:
        secret = self._require_secret()
        if not shared_token_ok(headers, query, secret, basic=True):
            raise WebhookError(401, "Freshdesk does not sign webhooks: the shared token (Basic auth password, "
                                    "X-Tagger-Token header or ?token=) is missing or wrong")

    def parse(self, payload: Any, headers: Mapping[str, str]) -> Message | None:
        if not isinstance(payload, Mapping):
            raise WebhookError(422, "payload must be a JSON object (see docs/helpdesks.md for the rule body)")
        if isinstance(payload.get("freshdesk_webhook"), Mapping):    # the body wrapped one level down
            payload = payload["freshdesk_webhook"]
        ticket_id = ticket_id_from(payload.get("ticket_id"), "ticket_id")
        if "description" not in payload and "latest_public_comment" not in payload:
            raise WebhookError(422, "missing field description or latest_public_comment")
        event = _usable(payload.get("triggered_event")).strip()
        compact = event.replace(" ", "").lower()
        if "from:" in compact or "note_type:private" in compact:
            return None                       # a property change or a private note, not a customer message
        created = "ticket_action:created" in compact
        comment = _usable(payload.get("latest_public_comment"))
        description = _usable(payload.get("description"))
        text = description if created or not comment.strip() else comment
        if not text.strip():
            return None
        source = _usable(payload.get("source")).strip()
        channel = SOURCE_CODES.get(source) or SOURCE_NAMES.get(source.lower()) or channel_from(source)
        url = _usable(payload.get("url")) or f"{self.base_url}/a/tickets/{ticket_id}"
        return Message(
            helpdesk=self.name, ticket_id=ticket_id, text=text,
            event_id=stable_event_id(self.name, ticket_id, event, _usable(payload.get("updated_at")), text),
            channel=channel, subject=_usable(payload.get("subject")),
            event_type=event or ("ticket_created" if created else "reply"),
            tags=split_tags(payload.get("tags")), url=url, meta={"source": source},
        )

    # -- API --------------------------------------------------------------------------------------------
    def list_tickets(self, client: httpx.Client, cursor: str | None, since: float | None) -> TicketPage:
        what = "freshdesk list tickets"
        state = json.loads(cursor) if cursor else {"since": iso_utc(since or 0), "page": 1, "seen": []}
        response = self._send(client, "GET", self.api_url("/api/v2/tickets"), what, headers=self._auth, params={
            "updated_since": state["since"], "order_by": "updated_at", "order_type": "asc",
            "per_page": self.per_page, "page": state["page"], "include": "description"})
        tickets = self._json(response, what)
        if not isinstance(tickets, list):
            raise HelpdeskError(f"{what}: expected a JSON list of tickets", status=200, permanent=True)
        seen, messages, skipped = set(state["seen"]), [], 0
        for ticket in tickets:
            ticket_id = as_text(get_in(ticket, "id"))
            text = as_text(get_in(ticket, "description_text")) or ""
            if not ticket_id or ticket_id in seen or not text.strip():
                skipped += 1
                continue
            source = as_text(ticket.get("source")) or ""
            messages.append(history_message(
                self.name, ticket_id, text, subject=as_text(ticket.get("subject")) or "",
                channel=SOURCE_CODES.get(source) or SOURCE_NAMES.get(source.lower()) or channel_from(source),
                tags=split_tags(ticket.get("tags")),
                url=f"{self.base_url}/a/tickets/{ticket_id}", updated=as_text(ticket.get("updated_at")) or ""))
        if 'rel="next"' not in response.headers.get("link", "").replace("rel=next", 'rel="next"'):
            return TicketPage(messages, None, skipped)
        if state["page"] < self.max_page:
            return TicketPage(messages, json.dumps({**state, "page": state["page"] + 1}), skipped)
        last = as_text(get_in(tickets, -1, "updated_at")) if tickets else None
        if not last or last == state["since"]:
            raise HelpdeskError(f"{what}: more than {self.max_page} pages of tickets updated at {state['since']}; "
                                "the listing cannot page past them", permanent=True)
        at_last = [as_text(get_in(t, "id")) for t in tickets if as_text(get_in(t, "updated_at")) == last]
        return TicketPage(messages, json.dumps({"since": last, "page": 1, "seen": [i for i in at_last if i]}),
                          skipped)

    def write_tags(self, client: httpx.Client, ticket_id: str, add: list[str], remove: list[str]) -> None:
        url = self.api_url(f"/api/v2/tickets/{quote_id(ticket_id)}")
        what = f"freshdesk ticket {ticket_id}"
        ticket = self._json(self._send(client, "GET", url, f"get {what}", headers=self._auth), f"get {what}")
        current = list(split_tags(ticket.get("tags") if isinstance(ticket, Mapping) else None))
        merged = self.merged_tags(current, add, remove)
        if merged == current:
            return
        self._send(client, "PUT", url, f"update tags of {what}", json={"tags": merged}, headers=self._auth)
