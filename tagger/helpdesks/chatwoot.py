"""Chatwoot: an account webhook subscribed to `message_created`, labels through the Conversation Labels API.

Contract followed (documentation pages):
- Webhook events and payloads (`message_created` with `message_type: "incoming"` for customer messages,
  `private` for notes, `conversation`, `account`): https://www.chatwoot.com/docs/product/others/webhook-events
  (source: https://github.com/chatwoot/docs/blob/main/docs/product/others/webhook-events.md) and
  https://www.chatwoot.com/hc/user-guide/articles/1677693021-how-to-use-webhooks
- Signature (Chatwoot versions whose webhooks have a secret; API reference, Webhook object `secret`:
  https://developers.chatwoot.com/api-reference/webhooks/add-a-webhook): `X-Chatwoot-Timestamp` (Unix seconds),
  `X-Chatwoot-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{raw body}">`, and `X-Chatwoot-Delivery`, an id
  that stays the same across retries. The timestamp is held to the replay window (`signature_tolerance_s`).
  Older Chatwoot versions do not sign: then a shared token in the webhook URL (`?token=`) or an
  `X-Tagger-Token` header is required instead.
- Labels: https://developers.chatwoot.com/api-reference/conversations/list-labels and
  https://developers.chatwoot.com/api-reference/conversations/add-labels --
  `GET`/`POST /api/v1/accounts/{account_id}/conversations/{conversation_id}/labels`; the POST body
  `{"labels": [...]}` REPLACES the conversation's labels, so we read them first and send the union.
- Auth: header `api_access_token: {token}` (https://developers.chatwoot.com/api-reference/introduction).

Environment: TAGGER_CHATWOOT_URL (https://app.chatwoot.com or self-hosted), TAGGER_CHATWOOT_TOKEN (an agent's or
bot's access token), TAGGER_CHATWOOT_ACCOUNT_ID, TAGGER_CHATWOOT_SECRET (webhook secret, or the shared token).
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
    get_header,
    get_in,
    quote_id,
    require,
    split_tags,
    stable_event_id,
    ticket_id_from,
    verify_timestamped_sha256,
)

SIGNATURE_HEADER = "X-Chatwoot-Signature"
TIMESTAMP_HEADER = "X-Chatwoot-Timestamp"
DELIVERY_HEADER = "X-Chatwoot-Delivery"

#: `conversation.channel` values -> our channels (Chatwoot's inbox channel classes).
CHANNELS = {
    "channel::webwidget": "chat", "channel::api": "chat", "channel::whatsapp": "chat", "channel::sms": "chat",
    "channel::twiliosms": "chat", "channel::telegram": "chat", "channel::line": "chat",
    "channel::email": "ticket",
    "channel::facebookpage": "social", "channel::twitterprofile": "social", "channel::instagram": "social",
    "channel::tiktok": "social",
}


class ChatwootAdapter(BaseAdapter):
    name: ClassVar[str] = "chatwoot"

    def __init__(self, *, base_url: str, token: str, account_id: str, **common: Any):
        super().__init__(base_url=base_url, **common)
        self.account_id = str(account_id)
        self._auth = {"api_access_token": token}

    @classmethod
    def from_env(cls, env: Mapping[str, str], **common: Any) -> ChatwootAdapter:
        return cls(base_url=cls.env_value(env, "URL", why="the Chatwoot base URL"),
                   token=cls.env_value(env, "TOKEN", why="a Chatwoot access token (Profile settings)"),
                   account_id=cls.env_value(env, "ACCOUNT_ID", why="the numeric Chatwoot account id"),
                   secret=cls.env_value(env, "SECRET", required=False), **common)

    # -- webhook ----------------------------------------------------------------------------------------
    def verify(self, headers: Mapping[str, str], body: bytes, now: float,
               query: Mapping[str, str] | None = None) -> None:
        verify_timestamped_sha256(headers, body, now, query, secret=self._require_secret(),
                                  signature_header=SIGNATURE_HEADER, timestamp_header=TIMESTAMP_HEADER,
                                  tolerance_s=self.tolerance_s, who="Chatwoot webhook")

    def parse(self, payload: Any, headers: Mapping[str, str]) -> Message | None:
        event = as_text(require(payload, "event"))
        if event != "message_created":
            return None                       # conversation/contact events carry no new customer message
        message_type = payload.get("message_type")
        incoming = message_type == "incoming" or (type(message_type) is int and message_type == 0)
        if not incoming or payload.get("private") is True:
            return None                       # outgoing (agent/bot), template, activity or a private note
        conversation = require(payload, "conversation")
        if not isinstance(conversation, Mapping):
            raise WebhookError(422, "field conversation must be an object")
        display_id = conversation.get("display_id")
        ticket_id = ticket_id_from(display_id if display_id is not None else conversation.get("id"),
                                   "conversation.id")
        account = as_text(get_in(payload, "account", "id"))
        if account is not None and account != self.account_id:
            raise WebhookError(422, f"webhook is from Chatwoot account {account[:20]}, "
                                    f"not TAGGER_CHATWOOT_ACCOUNT_ID={self.account_id}")
        if "content" not in payload:
            raise WebhookError(422, "missing field content")
        content = payload.get("content")
        if content is None:
            return None                       # an attachment-only message: nothing to read
        text = as_text(content)
        if text is None:
            raise WebhookError(422, "field content must be a string")
        if not text.strip():
            return None
        message_id = as_text(payload.get("id"))
        delivery = get_header(headers, DELIVERY_HEADER)
        event_id = (f"chatwoot:{delivery}" if delivery else
                    stable_event_id(self.name, ticket_id, message_id, as_text(payload.get("created_at")), text))
        channel_name = as_text(conversation.get("channel")) or ""
        channel = CHANNELS.get(channel_name.lower()) or channel_from(channel_name, default="chat")
        return Message(
            helpdesk=self.name, ticket_id=ticket_id, text=text, event_id=event_id, channel=channel,
            subject=as_text(get_in(conversation, "additional_attributes", "mail_subject")) or "",
            event_type=event, tags=split_tags(conversation.get("labels")),
            url=f"{self.base_url}/app/accounts/{self.account_id}/conversations/{ticket_id}",
            author=as_text(get_in(payload, "sender", "name")),
            meta={"message_id": message_id, "inbox_id": as_text(get_in(payload, "inbox", "id")),
                  "channel": channel_name},
        )

    # -- API --------------------------------------------------------------------------------------------
    def write_tags(self, client: httpx.Client, ticket_id: str, add: list[str], remove: list[str]) -> None:
        url = self.api_url(f"/api/v1/accounts/{quote_id(self.account_id)}/conversations/"
                           f"{quote_id(ticket_id)}/labels")
        what = f"chatwoot conversation {ticket_id}"
        data = self._json(self._send(client, "GET", url, f"list labels of {what}", headers=self._auth),
                          f"list labels of {what}")
        current = list(split_tags(data.get("payload") if isinstance(data, Mapping) else None))
        merged = self.merged_tags(current, add, remove)
        if merged == current:
            return
        self._send(client, "POST", url, f"set labels of {what}", json={"labels": merged}, headers=self._auth)
