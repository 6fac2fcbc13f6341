"""Zendesk Support: a webhook connected to a ticket trigger, tags through the Tags API.

Contract followed (documentation pages):
- Signature: https://developer.zendesk.com/documentation/webhooks/verifying/
  `X-Zendesk-Webhook-Signature = base64(HMAC-SHA256(secret, X-Zendesk-Webhook-Signature-Timestamp + body))`.
- Request headers (`x-zendesk-webhook-invocation-id`, timestamp format `2021-03-25T05:09:27Z`):
  https://developer.zendesk.com/documentation/webhooks/anatomy-of-a-webhook-request/
- Trigger webhooks carry a JSON body the admin writes with placeholders:
  https://support.zendesk.com/hc/en-us/articles/4408886858138-Zendesk-placeholders-reference
- Tags: https://developer.zendesk.com/api-reference/ticketing/ticket-management/tags/
  `PUT /api/v2/tickets/{id}/tags` adds (keeps existing tags), `DELETE /api/v2/tickets/{id}/tags` removes the
  listed ones; body `{"tags": [...]}` for both.
- History (`tagger backfill --helpdesk zendesk`): the cursor-based Incremental Ticket Export,
  https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/ --
  `GET /api/v2/incremental/tickets/cursor.json?start_time={unix}` first, then `?cursor={after_cursor}` until
  `end_of_stream` is true; each ticket has `id`, `subject`, `description` (its first comment), `via.channel`,
  `status`, `tags`, `updated_at`. 10 requests a minute, 429 + Retry-After beyond (the backfill waits).
  Closed tickets cannot be updated (https://support.zendesk.com/hc/en-us/articles/4408887617050), so they are
  classified but never written to.
- Auth: `Authorization: Basic base64("{email}/token:{api_token}")`, or `Bearer {oauth_token}` without an email.

The JSON body the admin pastes into the trigger's "Notify active webhook" action (also in docs/helpdesks.md):

    {
      "ticket_id": "{{ticket.id}}",
      "subject": "{{ticket.title}}",
      "message": "{{ticket.latest_public_comment_html}}",
      "via": "{{ticket.via}}",
      "tags": "{{ticket.tags}}",
      "url": "{{ticket.link}}",
      "updated_at": "{{ticket.updated_at_with_timestamp}}",
      "author_role": "{{current_user.role}}"
    }

Environment: TAGGER_ZENDESK_URL (https://{subdomain}.zendesk.com), TAGGER_ZENDESK_EMAIL + TAGGER_ZENDESK_TOKEN
(API token; without an email the token is sent as an OAuth bearer token), TAGGER_ZENDESK_SECRET (the webhook's
signing secret).
"""
from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

import httpx

from tagger.errors import HelpdeskError, WebhookError
from tagger.helpdesks.base import (
    BaseAdapter,
    Message,
    TicketPage,
    as_text,
    channel_from,
    check_timestamp,
    constant_time_equal,
    get_header,
    get_in,
    history_message,
    hmac_b64,
    is_unrendered,
    quote_id,
    split_tags,
    stable_event_id,
    ticket_id_from,
)

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
INVOCATION_HEADER = "X-Zendesk-Webhook-Invocation-Id"

#: `{{current_user.role}}` values that mean "a customer wrote this" (anything else is an agent or admin).
CUSTOMER_ROLES = {"end-user", "end_user", "enduser", "end user"}


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


class ZendeskAdapter(BaseAdapter):
    name: ClassVar[str] = "zendesk"

    def __init__(self, *, base_url: str, token: str, email: str | None = None, **common: Any):
        super().__init__(base_url=base_url, **common)
        if email:
            basic = base64.b64encode(f"{email}/token:{token}".encode()).decode()
            self._auth = {"Authorization": f"Basic {basic}"}
        else:
            self._auth = {"Authorization": f"Bearer {token}"}

    @classmethod
    def from_env(cls, env: Mapping[str, str], **common: Any) -> ZendeskAdapter:
        return cls(base_url=cls.env_value(env, "URL", why="the Zendesk base URL, https://{subdomain}.zendesk.com"),
                   token=cls.env_value(env, "TOKEN", why="a Zendesk API token (or OAuth token)"),
                   email=cls.env_value(env, "EMAIL", required=False),
                   secret=cls.env_value(env, "SECRET", required=False), **common)

    # -- webhook ----------------------------------------------------------------------------------------
    def verify(self, headers: Mapping[str, str], body: bytes, now: float,
               query: Mapping[str, str] | None = None) -> None:
        secret = self._require_secret()
        signature = get_header(headers, SIGNATURE_HEADER)
        timestamp = get_header(headers, TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise WebhookError(401, f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
        expected = hmac_b64(secret, timestamp.encode() + body, "sha256")
        if not constant_time_equal(expected, signature.strip()):
            raise WebhookError(401, "Zendesk webhook signature does not match")
        check_timestamp(_timestamp(timestamp), now, self.tolerance_s)

    def parse(self, payload: Any, headers: Mapping[str, str]) -> Message | None:
        if not isinstance(payload, Mapping):
            raise WebhookError(422, "payload must be a JSON object (see docs/helpdesks.md for the trigger body)")
        kind = as_text(payload.get("type")) or ""
        if kind.startswith("zen:event-type:") or ("zendesk_event_version" in payload and "ticket_id" not in payload):
            # an event-subscription webhook (https://developer.zendesk.com/api-reference/webhooks/event-types/
            # webhook-event-types/): its body is Zendesk's, not the trigger body the adapter reads
            raise WebhookError(422, f"Zendesk event-subscription webhooks are not supported (event type {kind[:80]!r}): "
                                    "connect the webhook to a trigger with the JSON body of docs/helpdesks.md")
        ticket_id = ticket_id_from(payload.get("ticket_id"), "ticket_id")
        if "message" not in payload:
            raise WebhookError(422, "missing field message")
        role = (as_text(payload.get("author_role")) or "").strip().lower()
        if role and not is_unrendered(role) and role not in CUSTOMER_ROLES:
            return None                       # an agent's or admin's comment: not a customer message
        text = as_text(payload.get("message"))
        if text is None:
            raise WebhookError(422, "field message must be a string")
        if not text.strip() or is_unrendered(text):
            return None                       # no public comment to read (e.g. a field change)
        subject = as_text(payload.get("subject")) or ""
        updated_at = as_text(payload.get("updated_at")) or ""
        invocation = get_header(headers, INVOCATION_HEADER)
        event_id = f"zendesk:{invocation}" if invocation else stable_event_id(self.name, ticket_id, updated_at, text)
        url = as_text(payload.get("url"))
        if not url or is_unrendered(url):
            url = f"{self.base_url}/agent/tickets/{ticket_id}"
        elif not url.startswith(("http://", "https://")):
            url = f"https://{url}"            # {{ticket.link}} renders without a scheme
        return Message(
            helpdesk=self.name, ticket_id=ticket_id, text=text, event_id=event_id,
            channel=channel_from(payload.get("via")),
            subject="" if is_unrendered(subject) else subject,
            event_type=as_text(payload.get("event")) or "ticket.comment",
            tags=split_tags(payload.get("tags")), url=url,
            meta={"via": as_text(payload.get("via")) or "", "updated_at": updated_at},
        )

    # -- API --------------------------------------------------------------------------------------------
    def list_tickets(self, client: httpx.Client, cursor: str | None, since: float | None) -> TicketPage:
        what = "zendesk incremental ticket export"
        params: dict[str, Any] = {"cursor": cursor} if cursor else {"start_time": int(since or 0)}
        params["exclude_deleted"] = "true"
        data = self._json(self._send(client, "GET", self.api_url("/api/v2/incremental/tickets/cursor.json"), what,
                                     params=params, headers=self._auth), what)
        tickets = data.get("tickets") if isinstance(data, Mapping) else None
        if not isinstance(tickets, list):
            raise HelpdeskError(f"{what}: no tickets list in the response", status=200, permanent=True)
        messages, skipped = [], 0
        for ticket in tickets:
            ticket_id = as_text(get_in(ticket, "id"))
            text = as_text(get_in(ticket, "description")) or ""
            status = (as_text(get_in(ticket, "status")) or "").lower()
            if not ticket_id or not text.strip() or status == "deleted":
                skipped += 1
                continue
            messages.append(history_message(
                self.name, ticket_id, text, subject=as_text(ticket.get("subject")) or "",
                channel=channel_from(get_in(ticket, "via", "channel")), tags=split_tags(ticket.get("tags")),
                url=f"{self.base_url}/agent/tickets/{ticket_id}", updated=as_text(ticket.get("updated_at")) or "",
                writable=status != "closed", status=status))
        if data.get("end_of_stream") is True:
            return TicketPage(messages, None, skipped)
        after = as_text(data.get("after_cursor"))
        if not after:
            raise HelpdeskError(f"{what}: end_of_stream is false but there is no after_cursor", permanent=True)
        return TicketPage(messages, after, skipped)

    def write_tags(self, client: httpx.Client, ticket_id: str, add: list[str], remove: list[str]) -> None:
        url = self.api_url(f"/api/v2/tickets/{quote_id(ticket_id)}/tags")
        stale = [t for t in self.own_only(remove) if t not in add]
        if add:
            self._send(client, "PUT", url, f"zendesk add tags to ticket {ticket_id}",
                       json={"tags": list(dict.fromkeys(add))}, headers=self._auth)
        if stale:
            self._send(client, "DELETE", url, f"zendesk remove tags from ticket {ticket_id}",
                       json={"tags": stale}, headers=self._auth)
