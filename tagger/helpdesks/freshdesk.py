"""Freshdesk: an automation rule's "Trigger webhook" action, tags through the Tickets API.

Contract followed (documentation pages):
- Automation webhooks (request type, "Requires authentication", custom headers, JSON encoding, Advanced content
  with placeholders): https://support.freshdesk.com/support/solutions/articles/132589-using-webhooks-in-automation-rules
  and the ticket-update rules ("When an action performed by: Agent / Requester / System", events such as "Reply is
  sent" and "Note is added"): https://support.freshdesk.com/support/solutions/articles/99047
  Placeholders such as `{{ticket.id}}`, `{{ticket.latest_public_comment}}`, `{{ticket.requester.name}}`,
  `{{triggered_event}}` are those Freshdesk lists in the rule editor; the same body shape is used by Zulip's
  Freshdesk integration (https://github.com/zulip/zulip/blob/main/zerver/webhooks/freshdesk/doc.md).
- Who wrote what (Freshdesk's own code, github.com/Ramesh-Veeriaperumal/freshconsult, `Helpdesk::Note#
  update_observer_events` and `Helpdesk::Ticket#liquidize_comment`): a reply -- by the requester OR by an agent --
  fires `{reply_sent:sent}`; a note fires `{note_type:public}` / `{note_type:private}` and only agents add notes
  (a customer's note is raised as `reply_sent`); `{{ticket.latest_public_comment}}` renders as
  `"<author name> : <body>"`. So the event alone cannot tell a requester's reply from an agent's: the rule body
  carries `{{ticket.requester.name}}` and a reply is classified only when the latest public comment's author is
  the requester. Notes, property changes (`{status:{from:2,to:3}}`), other events, replies by anyone else and
  tickets an agent opened by outbound e-mail are ignored with the reason (`200 {"status": "ignored"}`).
- Freshdesk does not sign webhooks: we accept a shared token, sent by "Requires authentication" (HTTP Basic,
  the token as password or as API key), by a custom header `X-Tagger-Token`, or as `?token=` in the URL.
- Tags: https://developers.freshdesk.com/api/#update_ticket -- `PUT /api/v2/tickets/{id}` with `{"tags": [...]}`
  REPLACES the ticket's tags, so we `GET /api/v2/tickets/{id}` (https://developers.freshdesk.com/api/#view_a_ticket)
  first and send the union (everyone else's tags kept, only our stale ones dropped). Tags are free text: nothing
  has to exist beforehand (so `prepare` has nothing to do).
- Auth: https://developers.freshdesk.com/api/#authentication -- HTTP Basic with the API key as user, `X` as password;
  `check` calls View Me, `GET /api/v2/agents/me` (https://developers.freshdesk.com/api/#me).
- History (`tagger backfill --helpdesk freshdesk`): List All Tickets, https://developers.freshdesk.com/api/#list_all_tickets
  -- `GET /api/v2/tickets?updated_since=...&order_by=updated_at&order_type=asc&per_page=100&page=N&include=description`
  (without `updated_since` only the last 30 days are listed; `include=description` adds `description_text`);
  the `link` header carries `rel="next"` while more pages exist; page numbers stop at 300, so after page 300 the
  listing starts again from the last ticket's `updated_at` (tickets seen at that second are not repeated).
  Tickets with source 10 (Outbound Email: an agent wrote the description) are skipped.
- Rate limits: 429 with `Retry-After` (https://developers.freshdesk.com/api/#ratelimit).
- Set-up: Freshdesk's automation rules are created by hand; `setup` returns the exact steps and body
  (`SetupStep("manual", ...)`), with a fresh shared token when none is configured.

The JSON body the admin pastes (Encoding: JSON, Content: Advanced), also in docs/helpdesks.md:

    {
      "ticket_id": "{{ticket.id}}",
      "subject": "{{ticket.subject}}",
      "description": "{{ticket.description}}",
      "latest_public_comment": "{{ticket.latest_public_comment}}",
      "requester_name": "{{ticket.requester.name}}",
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
import re
import secrets
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from tagger.errors import HelpdeskError, WebhookError
from tagger.helpdesks.contract import BaseAdapter, Message, SetupStep, TicketPage
from tagger.helpdesks.payload import (
    as_text,
    channel_from,
    get_in,
    history_message,
    is_unrendered,
    iso_utc,
    quote_id,
    split_tags,
    stable_event_id,
    ticket_id_from,
)
from tagger.helpdesks.signing import SharedToken

#: `source` codes of the Tickets API (https://developers.freshdesk.com/api/#tickets) -> our channels.
SOURCE_CODES = {"1": "ticket", "2": "ticket", "3": "ticket", "7": "chat", "9": "ticket", "10": "ticket"}
#: `{{ticket.source}}` renders the source's name; the feedback widget is a web form, not a chat.
SOURCE_NAMES = {"feedback widget": "ticket", "portal": "ticket", "email": "ticket", "phone": "ticket",
                "outbound email": "ticket"}
#: Source 10, "Outbound Email": an agent opened the ticket, so its description is the agent's words.
OUTBOUND = {"10", "outbound email"}
#: `{{triggered_event}}` renders `{key:value}`, e.g. `{ticket_action:created}` or `{status:{from:2,to:3}}`.
_EVENT_RE = re.compile(r"^\{([a-z_]+):(.*)\}$")
#: What `liquidize_comment` appends to a comment with attachments: not the customer's words.
_ATTACHMENTS_RE = re.compile(r"\n\nAttachments :\n.*\Z", re.DOTALL)
FIELDS_BODY = """{
  "ticket_id": "{{ticket.id}}",
  "subject": "{{ticket.subject}}",
  "description": "{{ticket.description}}",
  "latest_public_comment": "{{ticket.latest_public_comment}}",
  "requester_name": "{{ticket.requester.name}}",
  "source": "{{ticket.source}}",
  "tags": "{{ticket.tags}}",
  "url": "{{ticket.url}}",
  "triggered_event": "{{triggered_event}}"
}"""


def _usable(value: Any) -> str:
    text = as_text(value) or ""
    return "" if is_unrendered(text) else text


def _event(compact: str) -> tuple[str, str]:
    """`{reply_sent:sent}` -> ("reply_sent", "sent"); ("", "") when the field is not an event rendering."""
    match = _EVENT_RE.match(compact)
    return (match.group(1), match.group(2)) if match else ("", "")


def _source_of(value: str) -> str:
    return SOURCE_CODES.get(value) or SOURCE_NAMES.get(value.lower()) or channel_from(value)


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
    def scheme(self) -> SharedToken:
        return SharedToken(self._require_secret(), basic=True,
                           refusal="Freshdesk does not sign webhooks: the shared token (Basic auth password, "
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
        key, value = _event(event.replace(" ", "").lower())
        source = _usable(payload.get("source")).strip()
        if key == "ticket_action" and value == "created":
            text = self._opening_text(payload, source)
        elif key == "reply_sent":
            text = self._requester_reply(payload)
        else:
            raise WebhookError(*self._ignored(event, key, value))
        if not text.strip():
            return None
        url = _usable(payload.get("url")) or f"{self.base_url}/a/tickets/{ticket_id}"
        return Message(
            helpdesk=self.name, ticket_id=ticket_id, text=text,
            event_id=stable_event_id(self.name, ticket_id, event, _usable(payload.get("updated_at")), text),
            channel=_source_of(source), subject=_usable(payload.get("subject")),
            event_type=event, tags=split_tags(payload.get("tags")), url=url,
            author=_usable(payload.get("requester_name")).strip() or None, meta={"source": source},
        )

    @staticmethod
    def _ignored(event: str, key: str, value: str) -> tuple[int, str]:
        """Why an event that is not the requester writing is not classified (status, reason)."""
        if not key:
            return 422, ("missing or unrecognised field triggered_event (put \"triggered_event\": "
                         "\"{{triggered_event}}\" in the rule body, see docs/helpdesks.md)")
        if key == "note_type":
            return 200, (f"Freshdesk {event}: a note, and only agents add notes (a customer's message is a reply); "
                         "only the requester's messages are classified")
        if value.startswith("{from:"):
            return 200, f"Freshdesk {event}: a property change, not a message"
        return 200, f"Freshdesk {event}: not a message written by the requester"

    @staticmethod
    def _opening_text(payload: Mapping[str, Any], source: str) -> str:
        """The description of a new ticket: the requester's words, unless an agent opened it by outbound e-mail."""
        if source.lower() in OUTBOUND:
            raise WebhookError(200, "Freshdesk outbound e-mail: an agent opened this ticket, its description is "
                                    "the agent's")
        return _usable(payload.get("description"))

    @staticmethod
    def _requester_reply(payload: Mapping[str, Any]) -> str:
        """The latest public comment if the requester wrote it. Freshdesk fires `reply_sent` for agents' replies
        too, and renders the comment as `"<author name> : <body>"`, so the author is compared with
        `{{ticket.requester.name}}`; the prefix (and the attachment list) are not the customer's words."""
        requester = _usable(payload.get("requester_name")).strip()
        if not requester:
            raise WebhookError(422, "reply_sent without requester_name: Freshdesk sends this event for an agent's "
                                    "reply too, so the rule body must carry \"requester_name\": "
                                    "\"{{ticket.requester.name}}\" (docs/helpdesks.md)")
        comment = _usable(payload.get("latest_public_comment"))
        prefix = f"{requester} : "
        if not comment.startswith(prefix):
            author = comment.partition(" : ")[0].strip() if " : " in comment else ""
            who = f"by {author!r}" if author else "without an author"
            raise WebhookError(200, f"Freshdesk reply {who}, not by the requester {requester!r}: an agent's reply "
                                    "or note is not classified")
        return _ATTACHMENTS_RE.sub("", comment[len(prefix):])

    # -- API --------------------------------------------------------------------------------------------
    def list_tickets(self, client: httpx.Client, cursor: str | None, since: float | None) -> TicketPage:
        state = json.loads(cursor) if cursor else {"since": iso_utc(since or 0), "page": 1, "seen": []}
        response, tickets = self._ticket_page(client, state)
        messages, skipped = self._history(tickets, set(state["seen"]))
        return TicketPage(messages, self._next_cursor(response, tickets, state), skipped)

    def _ticket_page(self, client: httpx.Client, state: Mapping[str, Any]) -> tuple[httpx.Response, list[Any]]:
        """One page of List All Tickets, oldest change first, from the listing position `state`."""
        what = "freshdesk list tickets"
        response = self._send(client, "GET", self.api_url("/api/v2/tickets"), what, headers=self._auth, params={
            "updated_since": state["since"], "order_by": "updated_at", "order_type": "asc",
            "per_page": self.per_page, "page": state["page"], "include": "description"})
        tickets = self._json(response, what)
        if not isinstance(tickets, list):
            raise HelpdeskError(f"{what}: expected a JSON list of tickets", status=200, permanent=True)
        return response, tickets

    def _history(self, tickets: list[Any], seen: set[str]) -> tuple[list[Message], int]:
        """The listed tickets as messages, and how many had nothing to classify (no id or description, seen at
        the previous page's last second, or opened by an agent's outbound e-mail)."""
        messages, skipped = [], 0
        for ticket in tickets:
            ticket_id = as_text(get_in(ticket, "id"))
            text = as_text(get_in(ticket, "description_text")) or ""
            source = as_text(get_in(ticket, "source")) or ""
            if not ticket_id or ticket_id in seen or not text.strip() or source in OUTBOUND:
                skipped += 1
                continue
            messages.append(history_message(
                self.name, ticket_id, text, subject=as_text(ticket.get("subject")) or "",
                channel=_source_of(source), tags=split_tags(ticket.get("tags")),
                url=f"{self.base_url}/a/tickets/{ticket_id}", updated=as_text(ticket.get("updated_at")) or ""))
        return messages, skipped

    def _next_cursor(self, response: httpx.Response, tickets: list[Any], state: Mapping[str, Any]) -> str | None:
        """The next page while the `link` header has `rel="next"`; past page `max_page`, the listing starts again
        from the last ticket's `updated_at`, remembering the tickets already seen at that second."""
        if 'rel="next"' not in response.headers.get("link", "").replace("rel=next", 'rel="next"'):
            return None
        if state["page"] < self.max_page:
            return json.dumps({**state, "page": state["page"] + 1})
        last = as_text(get_in(tickets, -1, "updated_at")) if tickets else None
        if not last or last == state["since"]:
            raise HelpdeskError(f"freshdesk list tickets: more than {self.max_page} pages of tickets updated at "
                                f"{state['since']}; the listing cannot page past them", permanent=True)
        at_last = [as_text(get_in(t, "id")) for t in tickets if as_text(get_in(t, "updated_at")) == last]
        return json.dumps({"since": last, "page": 1, "seen": [i for i in at_last if i]})

    def write_tags(self, client: httpx.Client, ticket_id: str, add: list[str], remove: list[str]) -> None:
        url = self.api_url(f"/api/v2/tickets/{quote_id(ticket_id)}")
        what = f"freshdesk ticket {ticket_id}"
        ticket = self._json(self._send(client, "GET", url, f"get {what}", headers=self._auth), f"get {what}")
        current = list(split_tags(ticket.get("tags") if isinstance(ticket, Mapping) else None))
        merged = self.merged_tags(current, add, remove)
        if merged == current:
            return
        self._send(client, "PUT", url, f"update tags of {what}", json={"tags": merged}, headers=self._auth)

    # -- set-up -------------------------------------------------------------------------------------------
    def check(self, client: httpx.Client) -> list[SetupStep]:
        """View Me (`GET /api/v2/agents/me`): proves the URL and the API key; Freshdesk tags need no set-up."""
        what = "freshdesk View Me"
        agent = self._json(self._send(client, "GET", self.api_url("/api/v2/agents/me"), what, headers=self._auth),
                           what)
        who = as_text(get_in(agent, "contact", "email")) or as_text(get_in(agent, "id")) or "the API key's agent"
        return [SetupStep("ok", "freshdesk API", f"{self.base_url} reachable, authorised as {who}; tags are free "
                                                 "text in Freshdesk, nothing to create")]

    def setup(self, client: httpx.Client, webhook_url: str) -> list[SetupStep]:
        """Freshdesk's automation rules are made by hand: the two rules, with the body to paste. A fresh shared
        token is made when TAGGER_FRESHDESK_SECRET is not set (and shown once, in `env`)."""
        token = self.secret or secrets.token_urlsafe(32)
        env = {} if self.secret else {"TAGGER_FRESHDESK_SECRET": token}
        password = "the value of TAGGER_FRESHDESK_SECRET" if self.secret else token
        action = (f"Action **Trigger webhook**: Request type POST; URL {webhook_url}; tick **Requires authentication**"
                  f", Username `tagger`, Password {password}; Encoding JSON; Content **Advanced**, paste:\n"
                  f"{FIELDS_BODY}")
        return [*self.prepare(client),
                SetupStep("manual", "freshdesk rule: new tickets",
                          "Admin > Workflows > Automations > **Ticket Creation** tab > New rule "
                          "\"MOT Tagger - new tickets\"; condition *Source* *is not* *Outbound Email*. " + action,
                          env=env),
                SetupStep("manual", "freshdesk rule: requester replies",
                          "Admin > Workflows > Automations > **Ticket Updates** tab > New rule "
                          "\"MOT Tagger - replies\"; *When an action performed by* **Requester**, *Involves any of "
                          "these events* **Reply is sent**. " + action)]
