"""Zammad: a webhook called by a trigger, tags through the Tags API.

Contract followed (documentation pages):
- Webhook payload and headers: https://admin-docs.zammad.org/en/latest/manage/webhook/payload.html
  (source: https://github.com/zammad/zammad-admin-documentation/blob/main/manage/webhook/payload.rst): the default
  body is `{"ticket": {...}, "article": {...}}`; headers `X-Zammad-Trigger` (trigger name), `X-Zammad-Delivery`
  (unique delivery id) and `X-Hub-Signature` when an "HMAC SHA1 Signature Token" is set.
- Signature: https://admin-docs.zammad.org/en/latest/manage/webhook/add.html -- `X-Hub-Signature: sha1=<hex>`,
  the HMAC-SHA1 of the raw body with the token (Zammad's `UserAgent.set_signature`). No timestamp is signed, so
  replays are caught by the delivery id (`X-Zammad-Delivery`), not by a time window.
- Tags: https://docs.zammad.org/en/latest/api/ticket/tags.html --
  `GET /api/v1/tags?object=Ticket&o_id={id}`, `POST /api/v1/tags/add` and `DELETE /api/v1/tags/remove` with
  `{"item": tag, "object": "Ticket", "o_id": id}`; add/remove are per tag, so nothing else is touched.
- Auth: https://docs.zammad.org/en/latest/api/intro.html#authentication -- `Authorization: Token token={token}`.

Environment: TAGGER_ZAMMAD_URL (https://zammad.example.com), TAGGER_ZAMMAD_TOKEN (access token with ticket.agent),
TAGGER_ZAMMAD_SECRET (the webhook's HMAC SHA1 signature token).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from tagger.errors import WebhookError
from tagger.helpdesks.base import (
    BaseAdapter,
    Message,
    as_text,
    channel_from,
    constant_time_equal,
    get_header,
    hmac_hex,
    require,
    split_tags,
    stable_event_id,
    ticket_id_from,
)

SIGNATURE_HEADER = "X-Hub-Signature"
DELIVERY_HEADER = "X-Zammad-Delivery"
TRIGGER_HEADER = "X-Zammad-Trigger"


class ZammadAdapter(BaseAdapter):
    name: ClassVar[str] = "zammad"

    def __init__(self, *, base_url: str, token: str, **common: Any):
        super().__init__(base_url=base_url, **common)
        self._auth = {"Authorization": f"Token token={token}"}

    @classmethod
    def from_env(cls, env: Mapping[str, str], **common: Any) -> ZammadAdapter:
        return cls(base_url=cls.env_value(env, "URL", why="the Zammad base URL"),
                   token=cls.env_value(env, "TOKEN", why="a Zammad access token with ticket.agent permission"),
                   secret=cls.env_value(env, "SECRET", required=False), **common)

    # -- webhook ----------------------------------------------------------------------------------------
    def verify(self, headers: Mapping[str, str], body: bytes, now: float,
               query: Mapping[str, str] | None = None) -> None:
        secret = self._require_secret()
        signature = (get_header(headers, SIGNATURE_HEADER) or "").strip()
        algo, _, digest = signature.partition("=")
        if algo.lower() != "sha1" or not digest:
            raise WebhookError(401, f"missing or malformed {SIGNATURE_HEADER} (expected sha1=<hex>)")
        if not constant_time_equal(hmac_hex(secret, body, "sha1"), digest.lower()):
            raise WebhookError(401, "Zammad webhook signature does not match")

    def parse(self, payload: Any, headers: Mapping[str, str]) -> Message | None:
        ticket = require(payload, "ticket")
        if not isinstance(ticket, Mapping):
            raise WebhookError(422, "field ticket must be an object")
        ticket_id = ticket_id_from(ticket.get("id"), "ticket.id")
        article = payload.get("article")
        if not isinstance(article, Mapping) or not article:
            return None                       # the trigger fired without a new article (e.g. a state change)
        if as_text(article.get("sender")) != "Customer" or article.get("internal") is True:
            return None                       # an agent's reply, a system message or an internal note
        body = as_text(require(payload, "article", "body"))
        if body is None:
            raise WebhookError(422, "field article.body must be a string")
        if not body.strip():
            return None
        delivery = get_header(headers, DELIVERY_HEADER)
        event_id = (f"zammad:{delivery}" if delivery else
                    stable_event_id(self.name, ticket_id, as_text(article.get("id")),
                                    as_text(article.get("updated_at")), body))
        article_type = as_text(article.get("type")) or ""
        return Message(
            helpdesk=self.name, ticket_id=ticket_id, text=body, event_id=event_id,
            channel=channel_from(article_type),
            subject=as_text(ticket.get("title")) or as_text(article.get("subject")) or "",
            event_type=get_header(headers, TRIGGER_HEADER) or "article.created",
            tags=split_tags(ticket.get("tags")),
            url=f"{self.base_url}/#ticket/zoom/{ticket_id}",
            author=as_text(article.get("from")),
            meta={"article_id": as_text(article.get("id")), "article_type": article_type,
                  "content_type": as_text(article.get("content_type")) or ""},
        )

    # -- API --------------------------------------------------------------------------------------------
    def write_tags(self, client: httpx.Client, ticket_id: str, add: list[str], remove: list[str]) -> None:
        what = f"zammad ticket {ticket_id}"
        o_id: int | str = int(ticket_id) if ticket_id.isdigit() else ticket_id
        response = self._send(client, "GET", self.api_url("/api/v1/tags"), f"list tags of {what}",
                              params={"object": "Ticket", "o_id": str(ticket_id)}, headers=self._auth)
        data = self._json(response, f"list tags of {what}")
        current = set(split_tags(data.get("tags") if isinstance(data, Mapping) else None))
        for tag in dict.fromkeys(add):
            if tag not in current:
                self._send(client, "POST", self.api_url("/api/v1/tags/add"), f"add tag {tag!r} to {what}",
                           json={"item": tag, "object": "Ticket", "o_id": o_id}, headers=self._auth)
        for tag in self.own_only(remove):
            if tag in current and tag not in add:
                self._send(client, "DELETE", self.api_url("/api/v1/tags/remove"),
                           f"remove tag {tag!r} from {what}",
                           json={"item": tag, "object": "Ticket", "o_id": o_id}, headers=self._auth)

