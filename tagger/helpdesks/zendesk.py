"""Zendesk Support: a webhook connected to a ticket trigger, tags through the Tags API.

Contract followed (documentation pages):
- Signature: https://developer.zendesk.com/documentation/webhooks/verifying/
  `X-Zendesk-Webhook-Signature = base64(HMAC-SHA256(secret, X-Zendesk-Webhook-Signature-Timestamp + body))`.
- Request headers (`x-zendesk-webhook-invocation-id`, timestamp format `2021-03-25T05:09:27Z`):
  https://developer.zendesk.com/documentation/webhooks/anatomy-of-a-webhook-request/
  The invocation id is NOT covered by the signature, so the event id is derived from the signed body instead:
  a captured delivery re-posted with a new invocation id is a duplicate, and outside the replay window it fails
  the timestamp check.
- Trigger webhooks carry a JSON body the admin writes with placeholders:
  https://support.zendesk.com/hc/en-us/articles/4408886858138-Zendesk-placeholders-reference
  (`current_user` is "the user currently updating the ticket (an end-user or agent)"; `{{current_user.role}}`
  renders `End-user`, `Agent` or `Admin`). Only end users are customers
  (https://support.zendesk.com/hc/en-us/articles/4408883763866, "end users, or customers ... their ticket
  comments can never be private"); an agent's or admin's comment is ignored with the reason.
- Tags: https://developer.zendesk.com/api-reference/ticketing/ticket-management/tags/
  `PUT /api/v2/tickets/{id}/tags` adds (keeps existing tags), `DELETE /api/v2/tickets/{id}/tags` removes the
  listed ones; body `{"tags": [...]}` for both; `GET /api/v2/tickets/{id}/tags` reads them. Tags need no
  creation; agents only see them while "tags on tickets" is enabled, which is `settings.tickets.tagging` of
  https://developer.zendesk.com/api-reference/ticketing/account-configuration/account_settings/ and
  https://support.zendesk.com/hc/en-us/articles/4408829424794 (Enabling and disabling ticket tags).
- History (`tagger backfill --helpdesk zendesk`): the cursor-based Incremental Ticket Export,
  https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/ --
  `GET /api/v2/incremental/tickets/cursor.json?start_time={unix}` first, then `?cursor={after_cursor}` until
  `end_of_stream` is true (10 requests a minute); then every ticket's comments with their authors,
  `GET /api/v2/tickets/{id}/comments?include=users&page[size]=100`, cursor paged by `meta.has_more` +
  `meta.after_cursor` (https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_comments/,
  https://developer.zendesk.com/documentation/ticketing/using-the-zendesk-api/side_loading/,
  https://developer.zendesk.com/api-reference/introduction/pagination/). Every end user's comment is read,
  not only the first. Both answer 429 + Retry-After at the rate limit
  (https://developer.zendesk.com/api-reference/introduction/rate-limits/); the backfill waits it out and
  the comments already read are kept in memory, so a retried page does not read them again. Closed tickets
  cannot be updated (https://support.zendesk.com/hc/en-us/articles/4408887617050): classified, never written.
- Set-up: https://developer.zendesk.com/api-reference/webhooks/webhooks-api/webhooks/ (`GET`/`POST
  /api/v2/webhooks`, `subscriptions: ["conditional_ticket_events"]` for a trigger webhook, `GET
  /api/v2/webhooks/{id}/signing_secret` -> `{"signing_secret": {"algorithm", "secret"}}`),
  https://developer.zendesk.com/api-reference/ticketing/business-rules/triggers/ (`GET`/`POST
  /api/v2/triggers`, action `notification_webhook` = `[webhook_id, body]`) and the conditions reference
  https://developer.zendesk.com/documentation/ticketing/reference-guides/conditions-reference/
  (`comment_is_public` is `true`, `role` is `end_user`). Check: `GET /api/v2/users/me`
  (https://developer.zendesk.com/api-reference/ticketing/users/users/#show-self; it answers anonymous
  callers too, with a user whose `id` is null).
- Auth: `Authorization: Basic base64("{email}/token:{api_token}")`, or `Bearer {oauth_token}` without an email.

The JSON body the admin pastes into the trigger's "Notify active webhook" action (also in docs/helpdesks.md,
and what `tagger setup zendesk` puts in the trigger it creates): `TRIGGER_BODY` below.

Environment: TAGGER_ZENDESK_URL (https://{subdomain}.zendesk.com), TAGGER_ZENDESK_EMAIL + TAGGER_ZENDESK_TOKEN
(API token; without an email the token is sent as an OAuth bearer token), TAGGER_ZENDESK_SECRET (the webhook's
signing secret).
"""
from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar

import httpx

from tagger.errors import ConfigError, HelpdeskError, WebhookError
from tagger.helpdesks.contract import BaseAdapter, Message, SetupStep, TicketPage
from tagger.helpdesks.payload import (
    as_text,
    channel_from,
    get_header,
    get_in,
    history_message,
    is_unrendered,
    iso_utc,
    quote_id,
    split_tags,
    stable_event_id,
    ticket_id_from,
)
from tagger.helpdesks.signing import Base64Hmac, constant_time_equal

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
INVOCATION_HEADER = "X-Zendesk-Webhook-Invocation-Id"

#: `{{current_user.role}}` renders `End-user`; the API's `role` is `end-user`. Anything else is staff.
CUSTOMER_ROLES = {"end-user", "enduser"}

#: what the trigger's "Notify active webhook" action sends (docs/helpdesks.md shows the same JSON)
TRIGGER_BODY: dict[str, str] = {
    "ticket_id": "{{ticket.id}}",
    "subject": "{{ticket.title}}",
    "message": "{{ticket.latest_public_comment_html}}",
    "via": "{{ticket.via}}",
    "tags": "{{ticket.tags}}",
    "url": "{{ticket.link}}",
    "updated_at": "{{ticket.updated_at_with_timestamp}}",
    "author_role": "{{current_user.role}}",
}
WEBHOOK_NAME = "MOT Tagger"
TRIGGER_TITLE = "MOT Tagger"
#: fire on a public comment written by an end user (the customer), in one update
TRIGGER_CONDITIONS: dict[str, list[dict[str, str]]] = {
    "all": [{"field": "comment_is_public", "operator": "is", "value": "true"},
            {"field": "role", "operator": "is", "value": "end_user"}],
    "any": [],
}
TRIGGER_WEBHOOK_SUBSCRIPTION = "conditional_ticket_events"
TAGS_SETTING_FIX = ("Admin Center → Objects and rules → Tickets → Settings → Tags: select \"Enable tags on "
                    "tickets\" and save (while it is off, agents do not see the mot_* and sentiment_* tags)")
_MAX_LIST_PAGES = 100           # webhooks/triggers/comments listings: a bound, never an endless loop


def _timestamp(value: str) -> float:
    """Zendesk sends ISO 8601 (`2021-03-25T05:09:27Z`); plain epoch seconds are accepted too."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise WebhookError(401, f"unreadable {TIMESTAMP_HEADER}: {value[:40]!r}") from exc
    if parsed.tzinfo is None:
        raise WebhookError(401, f"{TIMESTAMP_HEADER} has no time zone: {value[:40]!r}")
    return parsed.timestamp()


def _role(value: str) -> str:
    """`End-user`, `end_user`, `End user` -> `end-user` (how the placeholder and the API spell roles)."""
    return "-".join(value.strip().lower().replace("_", " ").replace("-", " ").split())


def signed_event_id(payload: Mapping[str, Any]) -> str:
    """The event id of a trigger delivery: a hash of its body (ticket, update time, comment, tags...), all of
    which the signature covers. The invocation-id header is not signed, so it cannot be trusted to dedupe."""
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return stable_event_id("zendesk", "signed-body", canonical)


@dataclass(frozen=True)
class _Position:
    """Where a backfill stands: an export page (its cursor, or the start time of the first page) and how many
    of its tickets are done (`last`: the id of the last one, to find the place again if the page shifted)."""

    cursor: str | None = None
    start_time: int = 0
    skip: int = 0
    last: str | None = None

    @classmethod
    def parse(cls, cursor: str | None, since: float | None) -> _Position:
        if not cursor:
            return cls(start_time=int(since or 0))
        if not cursor.startswith("{"):
            return cls(cursor=cursor)         # a bare export cursor (checkpoints of earlier versions)
        try:
            data = json.loads(cursor)
            return cls(cursor=data.get("cursor"), start_time=int(data.get("start_time") or 0),
                       skip=int(data.get("skip") or 0), last=data.get("last"))
        except (ValueError, TypeError, AttributeError) as exc:
            raise HelpdeskError(f"zendesk backfill: unreadable checkpoint cursor {cursor[:80]!r}",
                                permanent=True) from exc

    def encode(self) -> str:
        return json.dumps({"cursor": self.cursor, "start_time": self.start_time, "skip": self.skip,
                           "last": self.last}, sort_keys=True)

    @property
    def page_key(self) -> tuple[str, str]:
        return ("cursor", self.cursor) if self.cursor else ("start_time", str(self.start_time))


class ZendeskAdapter(BaseAdapter):
    name: ClassVar[str] = "zendesk"
    #: tickets whose comments one `list_tickets` call reads (one checkpoint each; an export page holds 1,000)
    comments_per_call: ClassVar[int] = 100

    def __init__(self, *, base_url: str, token: str, email: str | None = None, **common: Any):
        super().__init__(base_url=base_url, **common)
        if email:
            basic = base64.b64encode(f"{email}/token:{token}".encode()).decode()
            self._auth = {"Authorization": f"Basic {basic}"}
        else:
            self._auth = {"Authorization": f"Bearer {token}"}
        self._export_page: tuple[tuple[str, str], dict[str, Any]] | None = None
        self._texts: dict[str, list[str] | None] = {}   # ticket@updated_at -> customer comments (retries)

    @classmethod
    def from_env(cls, env: Mapping[str, str], **common: Any) -> ZendeskAdapter:
        return cls(base_url=cls.env_value(env, "URL", why="the Zendesk base URL, https://{subdomain}.zendesk.com"),
                   token=cls.env_value(env, "TOKEN", why="a Zendesk API token (or OAuth token)"),
                   email=cls.env_value(env, "EMAIL", required=False),
                   secret=cls.env_value(env, "SECRET", required=False), **common)

    # -- webhook ----------------------------------------------------------------------------------------
    def scheme(self) -> Base64Hmac:
        return Base64Hmac(self._require_secret(), SIGNATURE_HEADER, "Zendesk webhook", digest="sha256",
                          timestamp_header=TIMESTAMP_HEADER, tolerance_s=self.tolerance_s,
                          read_timestamp=_timestamp, write_timestamp=iso_utc)

    def parse(self, payload: Any, headers: Mapping[str, str]) -> Message | None:
        if not isinstance(payload, Mapping):
            raise WebhookError(422, "payload must be a JSON object (see docs/helpdesks.md for the trigger body)")
        self._refuse_event_subscription(payload)
        ticket_id = ticket_id_from(payload.get("ticket_id"), "ticket_id")
        if "message" not in payload:
            raise WebhookError(422, "missing field message")
        tags = self._tags(payload)
        self._require_customer(payload)
        text = as_text(payload.get("message"))
        if text is None:
            raise WebhookError(422, "field message must be a string")
        if not text.strip() or is_unrendered(text):
            return None                       # no public comment to read (e.g. a field change)
        subject = as_text(payload.get("subject")) or ""
        updated_at = as_text(payload.get("updated_at")) or ""
        return Message(
            helpdesk=self.name, ticket_id=ticket_id, text=text, event_id=signed_event_id(payload),
            channel=channel_from(payload.get("via")),
            subject="" if is_unrendered(subject) else subject,
            event_type=as_text(payload.get("event")) or "ticket.comment",
            tags=tags, url=self._ticket_url(ticket_id, as_text(payload.get("url"))),
            meta={"via": as_text(payload.get("via")) or "", "updated_at": updated_at,
                  "invocation_id": get_header(headers, INVOCATION_HEADER) or ""},
        )

    @staticmethod
    def _refuse_event_subscription(payload: Mapping[str, Any]) -> None:
        """An event-subscription webhook (https://developer.zendesk.com/api-reference/webhooks/event-types/
        webhook-event-types/) sends Zendesk's body, not the trigger body the adapter reads."""
        kind = as_text(payload.get("type")) or ""
        if kind.startswith("zen:event-type:") or ("zendesk_event_version" in payload and "ticket_id" not in payload):
            raise WebhookError(422, f"Zendesk event-subscription webhooks are not supported (event type {kind[:80]!r}): "
                                    "connect the webhook to a trigger with the JSON body of docs/helpdesks.md")

    @staticmethod
    def _tags(payload: Mapping[str, Any]) -> tuple[str, ...]:
        """`{{ticket.tags}}`: the ticket's tags after the update. Required, because a missing field would read
        as "the agent removed every tag" and be taken for a correction."""
        value = payload.get("tags")
        if value is None:
            raise WebhookError(422, "missing field tags: the trigger body must carry \"tags\": \"{{ticket.tags}}\" "
                                    "(docs/helpdesks.md)")
        if isinstance(value, str) and is_unrendered(value):
            raise WebhookError(422, f"field tags holds an unrendered placeholder {value[:60]!r}: check the webhook "
                                    "body configured in the trigger")
        return split_tags(value)

    @staticmethod
    def _require_customer(payload: Mapping[str, Any]) -> None:
        """Only an end user's comment is the customer's (`{{current_user.role}}`, the user making the update)."""
        raw = as_text(payload.get("author_role"))
        if raw is None:
            raise WebhookError(422, "missing field author_role: the trigger body must carry \"author_role\": "
                                    "\"{{current_user.role}}\" (docs/helpdesks.md)")
        if is_unrendered(raw):
            raise WebhookError(422, f"field author_role holds an unrendered placeholder {raw[:60]!r}: check the "
                                    "webhook body configured in the trigger")
        if _role(raw) in CUSTOMER_ROLES:
            return
        who = f"a Zendesk {raw.strip()[:40]!r}" if raw.strip() else "no user (a system update)"
        raise WebhookError(200, f"comment written by {who}, not by an end user: only customers' comments are "
                                "classified (give the trigger the condition Current user Is (end user))")

    def _ticket_url(self, ticket_id: str, url: str | None) -> str:
        if not url or is_unrendered(url):
            return f"{self.base_url}/agent/tickets/{ticket_id}"
        if not url.startswith(("http://", "https://")):
            return f"https://{url}"           # {{ticket.link}} renders without a scheme
        return url

    # -- API: tags --------------------------------------------------------------------------------------
    def write_tags(self, client: httpx.Client, ticket_id: str, add: list[str], remove: list[str]) -> None:
        url = self.api_url(f"/api/v2/tickets/{quote_id(ticket_id)}/tags")
        stale = [t for t in self.own_only(remove) if t not in add]
        if add:
            self._send(client, "PUT", url, f"zendesk add tags to ticket {ticket_id}",
                       json={"tags": list(dict.fromkeys(add))}, headers=self._auth)
        if stale:
            self._send(client, "DELETE", url, f"zendesk remove tags from ticket {ticket_id}",
                       json={"tags": stale}, headers=self._auth)

    def read_tags(self, client: httpx.Client, ticket_id: str) -> tuple[str, ...]:
        """`GET /api/v2/tickets/{id}/tags` (Show Tags). The trigger body carries the tags already
        (`payload_has_tags` stays True); this is for callers that need them outside a delivery."""
        what = f"zendesk read tags of ticket {ticket_id}"
        data = self._get(client, f"/api/v2/tickets/{quote_id(ticket_id)}/tags", what)
        tags = get_in(data, "tags")
        if not isinstance(tags, list):
            raise HelpdeskError(f"{what}: no tags list in the response", status=200, permanent=True)
        return split_tags(tags)

    # -- API: backfill ----------------------------------------------------------------------------------
    def list_tickets(self, client: httpx.Client, cursor: str | None, since: float | None) -> TicketPage:
        """Up to `comments_per_call` tickets of the export, each with every end user's comment. The cursor is
        opaque JSON (export cursor + tickets done); a bare export cursor of an earlier version is accepted."""
        position = _Position.parse(cursor, since)
        data = self._export(client, position)
        tickets = data["tickets"]
        skip = self._resume_index(tickets, position)
        chunk = tickets[skip: skip + self.comments_per_call]
        messages, skipped = [], 0
        for ticket in chunk:
            message = self._history(client, ticket)
            if message is None:
                skipped += 1
            else:
                messages.append(message)
        self._texts.clear()                   # the chunk is done: a retry of it will not happen
        done = skip + len(chunk)
        if done < len(tickets):
            last = as_text(get_in(chunk[-1], "id")) if chunk else position.last
            return TicketPage(messages, replace(position, skip=done, last=last).encode(), skipped)
        self._export_page = None
        if data.get("end_of_stream") is True:
            return TicketPage(messages, None, skipped)
        after = as_text(data.get("after_cursor"))
        if not after:
            raise HelpdeskError("zendesk incremental ticket export: end_of_stream is false but there is no "
                                "after_cursor", permanent=True)
        return TicketPage(messages, _Position(cursor=after).encode(), skipped)

    def _export(self, client: httpx.Client, position: _Position) -> dict[str, Any]:
        """One page of the export, kept while its tickets are read (the export allows 10 requests a minute)."""
        if self._export_page is not None and self._export_page[0] == position.page_key:
            return self._export_page[1]
        what = "zendesk incremental ticket export"
        params: dict[str, Any] = ({"cursor": position.cursor} if position.cursor
                                  else {"start_time": position.start_time})
        params["exclude_deleted"] = "true"
        data = self._json(self._send(client, "GET", self.api_url("/api/v2/incremental/tickets/cursor.json"), what,
                                     params=params, headers=self._auth), what)
        if not isinstance(data, dict) or not isinstance(data.get("tickets"), list):
            raise HelpdeskError(f"{what}: no tickets list in the response", status=200, permanent=True)
        data["tickets"] = [t for t in data["tickets"] if isinstance(t, Mapping)]
        self._export_page = (position.page_key, data)
        return data

    @staticmethod
    def _resume_index(tickets: list[Mapping[str, Any]], position: _Position) -> int:
        """Where to continue in the page: after `last` if the page shifted (a ticket updated since moves to the
        end of the export), else after `skip` tickets."""
        if position.last is None:
            return position.skip
        ids = [as_text(t.get("id")) for t in tickets]
        if 0 < position.skip <= len(ids) and ids[position.skip - 1] == position.last:
            return position.skip
        return ids.index(position.last) + 1 if position.last in ids else position.skip

    def _history(self, client: httpx.Client, ticket: Mapping[str, Any]) -> Message | None:
        """The ticket with its customers' comments as the text; None when there is nothing to classify."""
        ticket_id = as_text(get_in(ticket, "id"))
        status = (as_text(get_in(ticket, "status")) or "").lower()
        if not ticket_id or status == "deleted":
            return None
        updated = as_text(ticket.get("updated_at")) or ""
        key = f"{ticket_id}@{updated}"
        if key not in self._texts:
            self._texts[key] = self._customer_comments(client, ticket_id)
        comments = self._texts[key]
        if not comments:
            return None
        return history_message(
            self.name, ticket_id, "\n\n".join(comments), subject=as_text(ticket.get("subject")) or "",
            channel=channel_from(get_in(ticket, "via", "channel")), tags=split_tags(ticket.get("tags")),
            url=f"{self.base_url}/agent/tickets/{ticket_id}", updated=updated, writable=status != "closed",
            status=status, customer_comments=len(comments))

    def _customer_comments(self, client: httpx.Client, ticket_id: str) -> list[str] | None:
        """Every comment of the ticket whose author is an end user, oldest first; None when the ticket is gone
        (deleted between the export and now: skipped, not an error that stops the backfill)."""
        texts: list[str] = []
        try:
            for comments, roles in self._comment_pages(client, ticket_id):
                for comment in comments:
                    author = as_text(get_in(comment, "author_id"))
                    text = as_text(get_in(comment, "plain_body")) or as_text(get_in(comment, "body")) or ""
                    if author is not None and roles.get(author) in CUSTOMER_ROLES and text.strip():
                        texts.append(text.strip())
        except HelpdeskError as exc:
            if exc.status == 404:
                return None
            raise
        return texts

    def _comment_pages(self, client: httpx.Client, ticket_id: str
                       ) -> Iterator[tuple[list[Mapping[str, Any]], dict[str, str]]]:
        """(comments, author id -> role) per page of List Comments, with the authors side-loaded."""
        what = f"zendesk list comments of ticket {ticket_id}"
        params: dict[str, Any] = {"include": "users", "page[size]": 100}
        for _ in range(_MAX_LIST_PAGES):
            data = self._get(client, f"/api/v2/tickets/{quote_id(ticket_id)}/comments", what, params=params)
            comments = get_in(data, "comments")
            if not isinstance(comments, list):
                raise HelpdeskError(f"{what}: no comments list in the response", status=200, permanent=True)
            users = get_in(data, "users") or []
            roles = {as_text(get_in(u, "id")) or "": _role(as_text(get_in(u, "role")) or "")
                     for u in users if isinstance(u, Mapping)}
            yield [c for c in comments if isinstance(c, Mapping)], roles
            after = as_text(get_in(data, "meta", "after_cursor"))
            if get_in(data, "meta", "has_more") is not True or not after:
                return
            params = {**params, "page[after]": after}

    # -- API: check, prepare, setup ---------------------------------------------------------------------
    def check(self, client: httpx.Client) -> list[SetupStep]:
        """`GET /api/v2/users/me`: reachable and authorised (an anonymous answer means the credentials were not
        used), and whether ticket tags are visible to agents. Read-only."""
        user = self._me(client)
        role = _role(as_text(get_in(user, "role")) or "")
        who = f"{as_text(get_in(user, 'email')) or as_text(get_in(user, 'name')) or 'user'} ({role})"
        if role in CUSTOMER_ROLES:
            raise ConfigError(f"Zendesk credentials belong to {who}, an end user: tags can only be written by an "
                              "agent; use an agent's (for `tagger setup` and backfill: an admin's) API token")
        detail = "authorised" if role == "admin" else ("authorised to write tags; `tagger setup zendesk` and "
                                                       "`tagger backfill --helpdesk zendesk` need an admin's token")
        return [SetupStep("ok", f"zendesk API {self.base_url}", f"{detail}, as {who}"), self._tagging_step(client)]

    def prepare(self, client: httpx.Client) -> list[SetupStep]:
        """Zendesk creates a tag the first time it is used, so nothing is created; but agents only see ticket
        tags while "Enable tags on tickets" is on, so refuse with the fix when it is off."""
        step = self._tagging_step(client)
        if step.action == "missing":
            raise ConfigError(f"Zendesk ticket tags are disabled, so agents would not see our tags: {TAGS_SETTING_FIX}")
        return [step]

    def setup(self, client: httpx.Client, webhook_url: str) -> list[SetupStep]:
        """`prepare`, then the trigger webhook for `webhook_url` and the trigger that notifies it, each found
        first (by endpoint; by the webhook it notifies) and created only when missing. Zendesk generates the
        signing secret itself, so it is read back and returned in `env`."""
        steps = self.prepare(client)
        manual = self._manual_setup(webhook_url)
        try:
            webhook_id = self._ensure_webhook(client, webhook_url, steps)
        except HelpdeskError as exc:
            return [*steps, *_refused(exc, manual)]
        try:
            self._ensure_trigger(client, webhook_id, steps)
        except HelpdeskError as exc:
            return [*steps, *_refused(exc, manual[1:])]
        return steps

    def _ensure_webhook(self, client: httpx.Client, webhook_url: str, steps: list[SetupStep]) -> str:
        target = webhook_url.rstrip("/")
        matching = [w for w in self._listing(client, "/api/v2/webhooks", "webhooks", "zendesk list webhooks")
                    if (as_text(w.get("endpoint")) or "").rstrip("/") == target]
        usable = [w for w in matching if TRIGGER_WEBHOOK_SUBSCRIPTION in (w.get("subscriptions") or [])]
        for other in (w for w in matching if w not in usable):
            steps.append(SetupStep(
                "manual", f"webhook {as_text(other.get('id'))}",
                f"it points at {webhook_url} but is subscribed to Zendesk events {other.get('subscriptions')}, "
                "whose deliveries the tagger refuses: Admin Center → Apps and integrations → Webhooks → open it → "
                "Actions → Delete"))
        if usable:
            webhook = usable[0]
            created = False
        else:
            webhook = self._create_webhook(client, webhook_url)
            created = True
        webhook_id = as_text(webhook.get("id")) or ""
        steps.append(self._secret_step(client, webhook_id, webhook_url, created))
        if not created and as_text(webhook.get("status")) != "active":
            steps.append(SetupStep("manual", f"webhook {webhook_url}",
                                   "it is inactive: Admin Center → Apps and integrations → Webhooks → open it → "
                                   "Actions → Activate"))
        return webhook_id

    def _create_webhook(self, client: httpx.Client, webhook_url: str) -> Mapping[str, Any]:
        what = "zendesk create webhook"
        body = {"webhook": {"name": WEBHOOK_NAME, "endpoint": webhook_url, "http_method": "POST",
                            "request_format": "json", "status": "active",
                            "subscriptions": [TRIGGER_WEBHOOK_SUBSCRIPTION],
                            "description": "MOT Tagger: customers' public comments, notified by the trigger "
                                           f"{TRIGGER_TITLE!r}"}}
        data = self._json(self._send(client, "POST", self.api_url("/api/v2/webhooks"), what, json=body,
                                     headers=self._auth), what)
        webhook = get_in(data, "webhook")
        if not isinstance(webhook, Mapping) or not as_text(webhook.get("id")):
            raise HelpdeskError(f"{what}: no webhook id in the response", status=200, permanent=True)
        return webhook

    def _secret_step(self, client: httpx.Client, webhook_id: str, webhook_url: str, created: bool) -> SetupStep:
        """Read the signing secret back; `env` carries it when the configured TAGGER_ZENDESK_SECRET differs."""
        what = f"zendesk read signing secret of webhook {webhook_id}"
        data = self._get(client, f"/api/v2/webhooks/{quote_id(webhook_id)}/signing_secret", what)
        secret = as_text(get_in(data, "signing_secret", "secret"))
        if not secret:
            raise HelpdeskError(f"{what}: no signing_secret.secret in the response", status=200, permanent=True)
        what_step = f"webhook {webhook_url}"
        if self.secret and constant_time_equal(self.secret, secret):
            return SetupStep("created" if created else "exists", what_step,
                             f"id {webhook_id}; TAGGER_ZENDESK_SECRET matches its signing secret")
        return SetupStep("created" if created else "exists", what_step,
                         f"id {webhook_id}; set TAGGER_ZENDESK_SECRET to its signing secret (in env)",
                         env={"TAGGER_ZENDESK_SECRET": secret})

    def _ensure_trigger(self, client: httpx.Client, webhook_id: str, steps: list[SetupStep]) -> None:
        for trigger in self._listing(client, "/api/v2/triggers", "triggers", "zendesk list triggers"):
            body = _webhook_body(trigger, webhook_id)
            if body is None:
                continue
            what = f"trigger {as_text(trigger.get('title'))!r} (id {as_text(trigger.get('id'))})"
            steps.append(SetupStep("exists", what, f"notifies webhook {webhook_id}"))
            if any(body.get(key) != value for key, value in TRIGGER_BODY.items()):
                steps.append(SetupStep("manual", what, "its JSON body differs from the one the tagger reads: open "
                                       "it → Actions → Notify by → Active webhook → replace the body with\n"
                                       + json.dumps(TRIGGER_BODY, indent=2)))
            if trigger.get("active") is False:
                steps.append(SetupStep("manual", what, "it is inactive: Admin Center → Objects and rules → "
                                                       "Triggers → open it → Actions → Activate"))
            return
        what = "zendesk create trigger"
        payload = {"trigger": {"title": TRIGGER_TITLE, "active": True,
                               "description": "Sends each public comment by an end user to the MOT Tagger",
                               "conditions": TRIGGER_CONDITIONS,
                               "actions": [{"field": "notification_webhook",
                                            "value": [webhook_id, json.dumps(TRIGGER_BODY, indent=2)]}]}}
        data = self._json(self._send(client, "POST", self.api_url("/api/v2/triggers"), what, json=payload,
                                     headers=self._auth), what)
        steps.append(SetupStep("created", f"trigger {TRIGGER_TITLE!r}",
                               f"id {as_text(get_in(data, 'trigger', 'id'))}: public comments by end users notify "
                               f"webhook {webhook_id}"))

    def _manual_setup(self, webhook_url: str) -> list[SetupStep]:
        """What to click and paste when the API will not do it (the same as docs/helpdesks.md)."""
        return [
            SetupStep("manual", f"webhook {webhook_url}",
                      "Admin Center → Apps and integrations → Webhooks → Create webhook → \"Trigger or "
                      f"automation\"; name {WEBHOOK_NAME!r}, endpoint URL {webhook_url}, method POST, format JSON, "
                      "authentication None; after creating it open it → Signing secret → Reveal secret, and set "
                      "TAGGER_ZENDESK_SECRET to it"),
            SetupStep("manual", f"trigger {TRIGGER_TITLE!r}",
                      "Admin Center → Objects and rules → Triggers → Add trigger; conditions, Meet ALL: Comment Is "
                      "Public; Current user Is (end user). Actions: Notify by → Active webhook → the webhook above, "
                      "JSON body:\n" + json.dumps(TRIGGER_BODY, indent=2)),
        ]

    # -- API helpers ------------------------------------------------------------------------------------
    def _me(self, client: httpx.Client) -> Mapping[str, Any]:
        what = "zendesk check credentials (GET /api/v2/users/me)"
        try:
            data = self._get(client, "/api/v2/users/me", what)
        except HelpdeskError as exc:
            if exc.status in (401, 403):
                raise ConfigError(f"{exc}: check TAGGER_ZENDESK_EMAIL and TAGGER_ZENDESK_TOKEN (Admin Center → Apps "
                                  "and integrations → Zendesk API: token access enabled, token active)") from exc
            raise
        user = get_in(data, "user")
        if not isinstance(user, Mapping) or get_in(user, "id") is None:
            raise ConfigError(f"{what}: Zendesk answered as an anonymous user, so the credentials were not accepted; "
                              "check TAGGER_ZENDESK_EMAIL and TAGGER_ZENDESK_TOKEN")
        return user

    def _tagging_step(self, client: httpx.Client) -> SetupStep:
        """`settings.tickets.tagging` of Show Settings (`GET /api/v2/account/settings`)."""
        what = "zendesk ticket tags"
        try:
            data = self._get(client, "/api/v2/account/settings", "zendesk read account settings")
        except HelpdeskError as exc:
            if exc.status != 403:
                raise
            return SetupStep("manual", what, f"could not read the account settings (HTTP 403): check that {TAGS_SETTING_FIX}")
        if get_in(data, "settings", "tickets", "tagging") is False:
            return SetupStep("missing", what, TAGS_SETTING_FIX)
        return SetupStep("ok", what, "enabled; Zendesk creates a tag on first use, so "
                                     f"{', '.join(self.own_tag_names())} need no set-up")

    def _get(self, client: httpx.Client, path: str, what: str, **kwargs: Any) -> Any:
        return self._json(self._send(client, "GET", self.api_url(path), what, headers=self._auth, **kwargs), what)

    def _listing(self, client: httpx.Client, path: str, key: str, what: str) -> Iterator[Mapping[str, Any]]:
        """Every item of a cursor-paginated list (`page[size]`, `meta.has_more`, `meta.after_cursor`)."""
        params: dict[str, Any] = {"page[size]": 100}
        for _ in range(_MAX_LIST_PAGES):
            data = self._get(client, path, what, params=params)
            items = get_in(data, key)
            if not isinstance(items, list):
                raise HelpdeskError(f"{what}: no {key} list in the response", status=200, permanent=True)
            yield from (item for item in items if isinstance(item, Mapping))
            after = as_text(get_in(data, "meta", "after_cursor"))
            if get_in(data, "meta", "has_more") is not True or not after:
                return
            params = {"page[size]": 100, "page[after]": after}


def _refused(exc: HelpdeskError, manual: list[SetupStep]) -> list[SetupStep]:
    """The manual steps, saying why, when the API refuses (401/403: not an admin); other errors propagate."""
    if exc.status not in (401, 403):
        raise exc
    why = f"the API refused (HTTP {exc.status}; webhooks and triggers need an admin's token), so by hand: "
    return [replace(step, detail=why + step.detail) for step in manual]


def _webhook_body(trigger: Mapping[str, Any], webhook_id: str) -> dict[str, Any] | None:
    """The JSON body a trigger sends to `webhook_id` (`notification_webhook` = [id, body]); None if it does not
    notify that webhook. An unreadable body reads as `{}` (so it is reported as differing)."""
    for action in trigger.get("actions") or []:
        if not isinstance(action, Mapping) or action.get("field") != "notification_webhook":
            continue
        value = action.get("value")
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if isinstance(value, list) and value and as_text(value[0]) == webhook_id:
            try:
                body = json.loads(value[1]) if len(value) > 1 and isinstance(value[1], str) else {}
            except ValueError:
                body = {}
            return body if isinstance(body, dict) else {}
    return None
