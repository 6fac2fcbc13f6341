"""LiveAgent: a rule with the "HTTP request" action, tags through API v3.

Contract followed (documentation pages):
- Rules, the "Message added" / "Ticket created" triggers and the "HTTP request" action:
  https://support.liveagent.com/038465-Rules---Predefined-actions and
  https://support.liveagent.com/908400-Triggers-conditions-and-actions; the "message group type" rule condition
  (https://support.liveagent.com/761021-Message-group-types: *Incoming email* and *Offline* are the customer's,
  *Outgoing email* the agent's, *Internal* a note). The admin writes the JSON body of the request with the rule
  editor's variables (documented in docs/helpdesks.md); LiveAgent does not sign these requests, so a shared token is
  required (header `X-Tagger-Token` or `?token=` in the URL).
- Who wrote the message: the body's `author_role` (the variable for the message's user type). It is required: a
  message whose author is not a customer role (visitor, contact, customer...) is ignored with the reason, and a
  body without it is refused (422), since nothing else in it tells an agent's message from the customer's.
- API v3: https://support.liveagent.com/911737-API-v3 (generated reference and the official client,
  https://github.com/QualityUnit/LiveAgent-api-python, docs/TicketsApi.md, TagsApi.md, Ticket.md, MessageGroup.md,
  Message.md): auth header `apikey: {key}`; `GET /api/v3/tags` lists tags (`{id, name}`), `POST /api/v3/tags` creates
  one, `GET /api/v3/tickets/{id}` returns the ticket with `tags` as a list of tag ids, `PUT /api/v3/tickets/{id}`
  with `{"tags": [ids]}` sets them (a replace), so we read first and send the union. Ticket `channel_type` codes (E
  email, B contact button, M contact form, I invitation, C call, W call button, F facebook, A facebook message, T
  twitter, Q forum, S suggestion) map to our channels.
- Tags on tickets are ids, which the rule body cannot be trusted to render as names, so `payload_has_tags` is False
  and `read_tags` reads the ticket and the tag list from the API. `prepare` creates our tags that do not exist yet
  (list first, then `POST /api/v3/tags` for each missing one), so agents can pick them and the rule editor shows them.
- History (`tagger backfill --helpdesk liveagent`): `GET /api/v3/tickets` with `_page`, `_perPage`, `_sortField=
  date_changed`, `_sortDir=ASC` and `_filters=[["date_changed","D>=","<date>"]]` (the list parameters of
  get_tickets_list in the official client), then per ticket `GET /api/v3/tickets/{id}/messages` (`_page`,
  `_perPage`, `includeQuotedMessages=false`): message groups (`userid`, `type`, `status`, `messages`) whose messages
  have `userid`, `type` (M message, Y legacy message, I internal, N note, S system...) and `message`. The customer's
  text is the newest visible, non-internal message group written by the ticket's `owner_contactid`, its `M`/`Y`
  messages by that contact. The cursor is `{"since": <date_changed>, "page": n, "seen": [ids]}`: the listing
  restarts from the last ticket's change time, so tickets that change while we page are not skipped.
- Rate limits: "API requests are limited to 180 per minute per API key"
  (https://support.liveagent.com/217359-Request-rate-limits). A 429 without `Retry-After` is retried after 60 s.
- Check: `GET /api/v3/tags` and `GET /api/v3/tickets?_perPage=1` (read-only, authenticated). Set-up: LiveAgent's
  rules cannot be created through API v3, so `setup` returns the exact steps (`SetupStep("manual", ...)`).

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

import datetime as dt
import json
import secrets
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from tagger.errors import HelpdeskError, WebhookError
from tagger.helpdesks.contract import BaseAdapter, Message, SetupStep, TicketPage
from tagger.helpdesks.payload import (
    as_text,
    channel_from,
    history_message,
    is_unrendered,
    quote_id,
    split_tags,
    stable_event_id,
    ticket_id_from,
)
from tagger.helpdesks.signing import SharedToken

#: Ticket `channel_type` codes of API v3 -> our channels.
CHANNEL_CODES = {"E": "ticket", "M": "ticket", "C": "ticket", "W": "ticket", "Q": "ticket", "S": "ticket",
                 "B": "chat", "I": "chat", "F": "social", "A": "social", "T": "social"}
#: Values of the author field that mean a customer wrote the message (LiveAgent contacts are V visitors and
#: R registered visitors, Contact.md of the API reference).
CUSTOMER_ROLES = {"customer", "visitor", "registered visitor", "contact", "end-user", "enduser", "v", "r"}
#: Message group types that are never the customer's words: internal notes and calls, system records
#: (MessageGroup.md: I internal, U internal offline, Z internal collapsed, 1 internal call, S start info,
#: T transfer, R resolve, J postpone, X delete, B spam, G tag, 2 merged, 4 outgoing email, O forward).
NOT_CUSTOMER_GROUPS = {"I", "U", "Z", "1", "S", "T", "R", "J", "X", "B", "G", "2", "4", "O"}
#: Message types that carry the text itself (Message.md: M message, Y legacy message).
TEXT_MESSAGES = {"M", "Y"}
#: Ticket statuses not worth classifying (X deleted, B spam).
SKIP_STATUSES = {"X", "B"}
RATE_WINDOW_S = 60.0
RULE_BODY = """{
  "ticket_id": "{$conversation_id}",
  "subject": "{$conversation_subject}",
  "message": "{$message_body}",
  "channel": "{$conversation_channel_type}",
  "tags": "{$conversation_tags}",
  "author_role": "{$message_userType}",
  "message_id": "{$message_id}"
}"""


def _usable(value: Any) -> str:
    text = as_text(value) or ""
    return "" if is_unrendered(text) or ("{$" in text and "}" in text) else text


class LiveAgentAdapter(BaseAdapter):
    name: ClassVar[str] = "liveagent"
    payload_has_tags: ClassVar[bool] = False
    #: tickets per history page (each costs one more request for its messages; the limit is 180 a minute)
    per_page: ClassVar[int] = 25
    #: message groups per request, and how many such pages of one ticket are read at most
    messages_per_page: ClassVar[int] = 100
    max_message_pages: ClassVar[int] = 10

    def __init__(self, *, base_url: str, api_key: str, **common: Any):
        super().__init__(base_url=base_url, **common)
        self._auth = {"apikey": api_key}

    @classmethod
    def from_env(cls, env: Mapping[str, str], **common: Any) -> LiveAgentAdapter:
        return cls(base_url=cls.env_value(env, "URL", why="the LiveAgent URL, https://{account}.ladesk.com"),
                   api_key=cls.env_value(env, "API_KEY", why="a LiveAgent API v3 key"),
                   secret=cls.env_value(env, "SECRET", required=False), **common)

    # -- webhook ----------------------------------------------------------------------------------------
    def scheme(self) -> SharedToken:
        return SharedToken(self._require_secret(),
                           refusal="LiveAgent does not sign requests: the shared token (X-Tagger-Token header "
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
        if not role:
            raise WebhookError(422, "field author_role is missing or unrendered: without it an agent's message "
                                    "cannot be told from the customer's; use the HTTP request action's variable for "
                                    "who wrote the message (docs/helpdesks.md)")
        if role not in CUSTOMER_ROLES:
            raise WebhookError(200, f"LiveAgent message by {role!r}, not by the customer: only customers' messages "
                                    "are classified")
        text = as_text(payload.get("message"))
        if text is None:
            raise WebhookError(422, "field message must be a string")
        text = _usable(text)
        if not text.strip():
            return None
        channel_raw = _usable(payload.get("channel")).strip()
        message_id = _usable(payload.get("message_id"))
        tags = payload.get("tags")
        return Message(
            helpdesk=self.name, ticket_id=ticket_id, text=text,
            event_id=stable_event_id(self.name, ticket_id, message_id, _usable(payload.get("updated_at")), text),
            channel=CHANNEL_CODES.get(channel_raw) or channel_from(channel_raw), subject=_usable(payload.get("subject")),
            event_type=_usable(payload.get("event")) or "message_added",
            tags=split_tags(_usable(tags) if isinstance(tags, str) else tags),
            url=_usable(payload.get("url")) or None, meta={"channel": channel_raw, "message_id": message_id},
        )

    # -- API --------------------------------------------------------------------------------------------
    def _get(self, client: httpx.Client, path: str, what: str, **kwargs: Any) -> Any:
        return self._json(self._call(client, "GET", path, what, **kwargs), what)

    def _call(self, client: httpx.Client, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        """One API v3 call. LiveAgent allows 180 requests a minute per key; a 429 without Retry-After waits
        out the minute."""
        try:
            return self._send(client, method, self.api_url(path), what, headers=self._auth, **kwargs)
        except HelpdeskError as exc:
            if exc.status == 429 and exc.retry_after is None:
                raise HelpdeskError(str(exc), status=429, retry_after=RATE_WINDOW_S, permanent=False) from exc
            raise

    def _tag_ids(self, client: httpx.Client) -> dict[str, str]:
        data = self._get(client, "/api/v3/tags", "liveagent list tags")
        if not isinstance(data, list):
            raise HelpdeskError("liveagent list tags: expected a JSON list", permanent=False)
        return {name: tag_id for t in data if isinstance(t, Mapping)
                and (name := as_text(t.get("name"))) and (tag_id := as_text(t.get("id")))}

    def _create_tag(self, client: httpx.Client, tag: str) -> str:
        what = f"liveagent create tag {tag!r}"
        created = self._json(self._call(client, "POST", "/api/v3/tags", what, json={"name": tag}), what)
        tag_id = as_text(created.get("id")) if isinstance(created, Mapping) else None
        if not tag_id:
            raise HelpdeskError(f"{what}: no id in the response", permanent=False)
        return tag_id

    def _ticket_tag_ids(self, client: httpx.Client, ticket_id: str) -> list[str]:
        ticket = self._get(client, f"/api/v3/tickets/{quote_id(ticket_id)}", f"get liveagent ticket {ticket_id}")
        raw = ticket.get("tags") if isinstance(ticket, Mapping) else None
        return [i for i in raw if isinstance(i, str)] if isinstance(raw, list) else []

    def read_tags(self, client: httpx.Client, ticket_id: str) -> tuple[str, ...]:
        """The ticket's tags by name: `GET /api/v3/tickets/{id}` gives tag ids, `GET /api/v3/tags` their names
        (ids nobody can name are left out)."""
        names = {tag_id: name for name, tag_id in self._tag_ids(client).items()}
        return tuple(dict.fromkeys(names[i] for i in self._ticket_tag_ids(client, ticket_id) if i in names))

    def write_tags(self, client: httpx.Client, ticket_id: str, add: list[str], remove: list[str]) -> None:
        ids = self._tag_ids(client)
        for tag in dict.fromkeys(add):
            if tag not in ids:
                ids[tag] = self._create_tag(client, tag)
        current = self._ticket_tag_ids(client, ticket_id)
        stale_ids = {ids[t] for t in self.own_only(remove) if t in ids and t not in add}
        wanted = [ids[t] for t in dict.fromkeys(add)]
        kept = [i for i in current if i not in stale_ids]
        merged = list(dict.fromkeys(kept + [i for i in wanted if i not in kept]))
        if merged == current:
            return
        self._call(client, "PUT", f"/api/v3/tickets/{quote_id(ticket_id)}",
                   f"update tags of liveagent ticket {ticket_id}", json={"tags": merged})

    # -- history ------------------------------------------------------------------------------------------
    def list_tickets(self, client: httpx.Client, cursor: str | None, since: float | None) -> TicketPage:
        """One page of tickets by change time, oldest first, each with its customer's newest message."""
        what = "liveagent list tickets"
        state = json.loads(cursor) if cursor else {"since": _la_date(since) if since else "", "page": 1, "seen": []}
        params: dict[str, Any] = {"_page": state["page"], "_perPage": self.per_page, "_sortField": "date_changed",
                                  "_sortDir": "ASC"}
        if state["since"]:
            params["_filters"] = json.dumps([["date_changed", "D>=", state["since"]]])
        tickets = self._get(client, "/api/v3/tickets", what, params=params)
        if not isinstance(tickets, list):
            raise HelpdeskError(f"{what}: expected a JSON list of tickets", status=200, permanent=True)
        names = {tag_id: name for name, tag_id in self._tag_ids(client).items()} if tickets else {}
        seen, messages, skipped = set(state["seen"]), [], 0
        for ticket in tickets:
            message = self._history_message(client, ticket, names) if isinstance(ticket, Mapping) else None
            if message is None or message.ticket_id in seen:
                skipped += 1
                continue
            messages.append(message)
        return TicketPage(messages, self._next_cursor(state, tickets), skipped)

    def _next_cursor(self, state: dict[str, Any], tickets: list[Any]) -> str | None:
        """Restart from the last ticket's change time (not repeating the tickets seen at that time); page on
        only while a whole page shares the time we started from."""
        if len(tickets) < self.per_page:
            return None
        last = as_text(tickets[-1].get("date_changed")) if isinstance(tickets[-1], Mapping) else None
        if not last:
            raise HelpdeskError("liveagent list tickets: a ticket without date_changed; cannot page on",
                                permanent=True)
        if last == state["since"]:
            return json.dumps({**state, "page": state["page"] + 1})
        at_last = [as_text(t.get("id")) for t in tickets if isinstance(t, Mapping)
                   and as_text(t.get("date_changed")) == last]
        return json.dumps({"since": last, "page": 1, "seen": [i for i in at_last if i]})

    def _history_message(self, client: httpx.Client, ticket: Mapping[str, Any],
                         tag_names: Mapping[str, str]) -> Message | None:
        ticket_id = as_text(ticket.get("id"))
        owner = as_text(ticket.get("owner_contactid"))
        if not ticket_id or not owner or as_text(ticket.get("status")) in SKIP_STATUSES:
            return None
        text = self._customer_text(client, ticket_id, owner)
        if not text:
            return None
        code = as_text(ticket.get("channel_type")) or ""
        raw_tags = ticket.get("tags") if isinstance(ticket.get("tags"), list) else []
        return history_message(
            self.name, ticket_id, text, subject=as_text(ticket.get("subject")) or "",
            channel=CHANNEL_CODES.get(code) or channel_from(code),
            tags=tuple(tag_names[i] for i in raw_tags if isinstance(i, str) and i in tag_names),
            updated=as_text(ticket.get("date_changed")) or "", writable=True, code=as_text(ticket.get("code")) or "")

    def _customer_text(self, client: httpx.Client, ticket_id: str, owner: str) -> str:
        """The newest visible, non-internal message group the ticket's owner (the customer) wrote, as the text of
        its messages by that contact; "" when the customer wrote nothing (e.g. an agent's outgoing e-mail)."""
        newest = ""
        for page in range(1, self.max_message_pages + 1):
            groups = self._get(client, f"/api/v3/tickets/{quote_id(ticket_id)}/messages",
                               f"liveagent messages of ticket {ticket_id}",
                               params={"_page": page, "_perPage": self.messages_per_page,
                                       "includeQuotedMessages": "false"})
            if not isinstance(groups, list):
                break
            for group in groups:
                text = _group_text(group, owner) if isinstance(group, Mapping) else ""
                newest = text or newest
            if len(groups) < self.messages_per_page:
                break
        return newest

    # -- set-up -------------------------------------------------------------------------------------------
    def prepare(self, client: httpx.Client) -> list[SetupStep]:
        """Create our tags that LiveAgent does not have yet (idempotent: list first, create only the missing)."""
        ids = self._tag_ids(client)
        steps = []
        for tag in self.own_tag_names():
            if tag in ids:
                steps.append(SetupStep("exists", f"tag {tag}", f"id {ids[tag]}"))
            else:
                steps.append(SetupStep("created", f"tag {tag}", f"id {self._create_tag(client, tag)}"))
        return steps

    def check(self, client: httpx.Client) -> list[SetupStep]:
        """Read-only: the tag list (proves the key; says which of our tags are missing) and one ticket."""
        ids = self._tag_ids(client)
        self._get(client, "/api/v3/tickets", "liveagent list tickets", params={"_page": 1, "_perPage": 1})
        steps = [SetupStep("ok", "liveagent API", f"{self.base_url} reachable; the API key may read tags and tickets")]
        missing = [t for t in self.own_tag_names() if t not in ids]
        if missing:
            steps.append(SetupStep("missing", "liveagent tags", f"not created yet: {', '.join(missing)} "
                                   "(`tagger setup liveagent` creates them; the first write would too)"))
        return steps

    def setup(self, client: httpx.Client, webhook_url: str) -> list[SetupStep]:
        """`prepare`, then the rules to create by hand (API v3 has no endpoint for rules)."""
        steps = self.prepare(client)
        token = self.secret or secrets.token_urlsafe(32)
        env = {} if self.secret else {"TAGGER_LIVEAGENT_SECRET": token}
        url = f"{webhook_url}?token={token}" if not self.secret else f"{webhook_url}?token=<TAGGER_LIVEAGENT_SECRET>"
        action = (f"Action **HTTP request**: method POST, URL {url}, content type JSON, body (check each variable "
                  "against the action's variable list; author_role must be who wrote the message):\n" + RULE_BODY)
        return [*steps,
                SetupStep("manual", "liveagent rule: customer messages",
                          "Configuration > Automation > Rules > Create \"MOT Tagger - messages\": Apply when "
                          "**Message added**; conditions *message group type* is *Incoming email*, *Offline*, "
                          "*Chat* or your social channels (not *Outgoing email*, not *Internal*). " + action, env=env),
                SetupStep("manual", "liveagent rule: new tickets",
                          "Configuration > Automation > Rules > Create \"MOT Tagger - new tickets\": Apply when "
                          "**Ticket created**, same conditions and action (a repeat of the same message is "
                          "recognised and not classified twice). " + action)]


def _group_text(group: Mapping[str, Any], owner: str) -> str:
    """The text of a message group if the customer `owner` wrote it: visible (not deleted), not an internal or
    system group, its M/Y messages by that contact (a chat group holds both sides)."""
    if as_text(group.get("type")) in NOT_CUSTOMER_GROUPS or as_text(group.get("status")) == "D":
        return ""
    author = as_text(group.get("userid"))
    parts = []
    for message in group.get("messages") or []:
        if not isinstance(message, Mapping) or as_text(message.get("type")) not in TEXT_MESSAGES:
            continue
        if (as_text(message.get("userid")) or author) != owner:
            continue
        text = as_text(message.get("message")) or ""
        if text.strip():
            parts.append(text)
    return "\n".join(parts)


def _la_date(epoch: float) -> str:
    """Epoch seconds in the form LiveAgent's date filters take (`2025-01-01 00:00:00`, UTC)."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
