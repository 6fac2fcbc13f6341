"""Help Scout: the Webhooks app (events `convo.created`, `convo.customer.reply.created`), tags via Mailbox API 2.0.

Contract followed (documentation pages):
- Webhooks, events and headers: https://developer.helpscout.com/webhooks/ -- `X-HelpScout-Event` names the event,
  `X-HelpScout-Signature` is `base64(HMAC-SHA1(secret, raw body))`; conversation events carry a Conversation
  object (https://developer.helpscout.com/webhooks/objects/conversation/; v2 bodies as in
  https://developer.helpscout.com/mailbox-api/endpoints/conversations/get/ with `_embedded.threads`, legacy
  bodies with a `threads` list). Only a thread whose `createdBy.type` is `customer` (and whose `type` is not a
  note, line item or forward) is classified: an agent's reply, note or a conversation an agent started is ignored
  with the reason. No timestamp is signed and Help Scout sends no delivery id; the event id is built from what the
  signature covers only -- the body's conversation id and thread id (else its update time) and the text --, never
  from the unsigned `X-HelpScout-Event` header, so a captured delivery re-posted under another event name is a
  duplicate.
- Tags: https://developer.helpscout.com/mailbox-api/endpoints/conversations/tags/update/ --
  `PUT /v2/conversations/{id}/tags` with `{"tags": [...]}` REPLACES the tag list ("any tags existing on the
  conversation that are not part of the payload will be removed"), so we `GET /v2/conversations/{id}` first
  and send the union.
- Auth: https://developer.helpscout.com/mailbox-api/overview/authentication/ -- `Authorization: Bearer {token}`;
  tokens come from the Client Credentials flow, `POST /v2/oauth2/token` with `grant_type=client_credentials`
  (they expire, so with an app id and secret we fetch and refresh them ourselves).
- History (`tagger backfill --helpdesk helpscout`): List Conversations,
  https://developer.helpscout.com/mailbox-api/endpoints/conversations/list/ -- `GET /v2/conversations?status=all
  &embed=threads&sortField=modifiedAt&sortOrder=asc&page=N[&modifiedSince=...]`, a HAL page
  (`_embedded.conversations`, `page.number`, `page.totalPages`); with `embed=threads` each conversation carries
  the same `_embedded.threads` as a webhook, so the same customer thread is classified.
- Link to a conversation: `https://secure.helpscout.net/conversation/{id}/{number}/` (Conversation object docs).
- Check: Get Resource Owner, `GET /v2/users/me` (https://developer.helpscout.com/mailbox-api/endpoints/users/me/).
  Tags need no set-up: Help Scout creates a tag the first time Update Tags names it (the Mailbox API has no
  endpoint to create tags), so `prepare` has nothing to do.
- Set-up: List Webhooks `GET /v2/webhooks` (https://developer.helpscout.com/mailbox-api/endpoints/webhooks/list/,
  a HAL page; secrets are never returned), Create Webhook `POST /v2/webhooks` with `url`, `events`, `secret`
  (40 characters at most), `payloadVersion` `V2` (https://developer.helpscout.com/mailbox-api/endpoints/webhooks/create/),
  Update Webhook `PUT /v2/webhooks/{id}` with the same fields
  (https://developer.helpscout.com/mailbox-api/endpoints/webhooks/update/). `setup` creates the webhook for the
  URL with a fresh secret, or leaves an existing one alone when it already sends our events and a secret is
  configured; otherwise it updates it (a new secret when none is configured, since the API cannot show the old).

Environment: TAGGER_HELPSCOUT_URL (default https://api.helpscout.net), either TAGGER_HELPSCOUT_APP_ID +
TAGGER_HELPSCOUT_APP_SECRET (preferred) or a ready TAGGER_HELPSCOUT_TOKEN, TAGGER_HELPSCOUT_SECRET (the webhook's
secret key, 40 characters at most).
"""
from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping
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
    iso_utc,
    quote_id,
    split_tags,
    stable_event_id,
    ticket_id_from,
)
from tagger.helpdesks.signing import Base64Hmac

SIGNATURE_HEADER = "X-HelpScout-Signature"
EVENT_HEADER = "X-HelpScout-Event"
#: Events about a customer writing; every other event (agent reply, note, status, tags...) is ignored.
CUSTOMER_EVENTS = {"convo.created", "convo.customer.reply.created"}
#: Thread types that never hold a customer's message, whoever created them.
NOT_MESSAGES = {"note", "lineitem", "forwardparent", "forwardchild"}
#: Help Scout webhook secrets are at most 40 characters: 30 random bytes are 40 URL-safe characters.
SECRET_BYTES = 30
UI_URL = "https://secure.helpscout.net"
DEFAULT_API_URL = "https://api.helpscout.net"


def _customer_thread(threads: Any) -> Mapping[str, Any] | None:
    """The newest thread written by the customer (threads are newest first; `createdAt` decides if present).
    The author is the thread's `createdBy.type` (`customer` or `user`): a `customer`-type thread an agent
    created on the customer's behalf is the agent's writing."""
    if not isinstance(threads, list):
        return None
    candidates = [
        t for t in threads
        if isinstance(t, Mapping)
        and as_text(get_in(t, "createdBy", "type")) == "customer"
        and as_text(t.get("type")) not in NOT_MESSAGES
        and as_text(t.get("body"))
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda t: as_text(t.get("createdAt")) or "") if all(
        as_text(t.get("createdAt")) for t in candidates) else candidates[0]


class HelpScoutAdapter(BaseAdapter):
    name: ClassVar[str] = "helpscout"

    def __init__(self, *, base_url: str = DEFAULT_API_URL, token: str | None = None, app_id: str | None = None,
                 app_secret: str | None = None, **common: Any):
        super().__init__(base_url=base_url, **common)
        if not token and not (app_id and app_secret):
            raise ConfigError("Help Scout needs TAGGER_HELPSCOUT_APP_ID and TAGGER_HELPSCOUT_APP_SECRET "
                              "(client credentials) or TAGGER_HELPSCOUT_TOKEN")
        self._static_token = token
        self._app = (app_id, app_secret) if app_id and app_secret else None
        self._token: str | None = token
        self._expires_at = float("inf") if token and not self._app else 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, env: Mapping[str, str], **common: Any) -> HelpScoutAdapter:
        return cls(base_url=cls.env_value(env, "URL", default=DEFAULT_API_URL),
                   token=cls.env_value(env, "TOKEN", required=False),
                   app_id=cls.env_value(env, "APP_ID", required=False),
                   app_secret=cls.env_value(env, "APP_SECRET", required=False),
                   secret=cls.env_value(env, "SECRET", required=False), **common)

    # -- webhook ----------------------------------------------------------------------------------------
    def scheme(self) -> Base64Hmac:
        return Base64Hmac(self._require_secret(), SIGNATURE_HEADER, "Help Scout webhook", digest="sha1")

    def parse(self, payload: Any, headers: Mapping[str, str]) -> Message | None:
        event = get_header(headers, EVENT_HEADER)
        if not event:
            raise WebhookError(422, f"missing {EVENT_HEADER} header")
        if event not in CUSTOMER_EVENTS:
            raise WebhookError(200, f"Help Scout event {event}: not a customer's message (the webhook needs only "
                                    f"{' and '.join(sorted(CUSTOMER_EVENTS))})")
        if not isinstance(payload, Mapping):
            raise WebhookError(422, "payload must be a JSON object (a Help Scout Conversation)")
        ticket_id = ticket_id_from(payload.get("id"), "id")
        text, thread_id = self._customer_words(payload, event)
        number = as_text(payload.get("number"))
        updated = as_text(payload.get("userUpdatedAt")) or as_text(payload.get("modifiedAt")) or ""
        kind = as_text(payload.get("type")) or ""
        source = as_text(get_in(payload, "source", "type")) or ""
        channel = "social" if channel_from(source) == "social" else channel_from(kind)
        # only signed fields: the body's ids (else its update time) and text -- not the X-HelpScout-Event header
        anchor = thread_id if thread_id else f"preview@{updated}"
        return Message(
            helpdesk=self.name, ticket_id=ticket_id, text=text,
            event_id=stable_event_id(self.name, ticket_id, anchor, text),
            channel=channel, subject=as_text(payload.get("subject")) or "", event_type=event,
            tags=split_tags(payload.get("tags")),
            url=f"{UI_URL}/conversation/{ticket_id}/{number}/" if number else f"{UI_URL}/conversation/{ticket_id}/",
            meta={"thread_id": thread_id, "type": kind, "source": source, "from_preview": thread_id is None},
        )

    @staticmethod
    def _customer_words(payload: Mapping[str, Any], event: str) -> tuple[str, str | None]:
        """(text, thread id) of the newest thread the customer created. Without threads in the body, the
        conversation's `preview` ("a preview of the most recent thread") is the customer's only when the event
        says so: a customer reply, or a conversation the customer started."""
        threads = get_in(payload, "_embedded", "threads")
        threads = threads if threads is not None else payload.get("threads")
        if isinstance(threads, list) and threads:
            thread = _customer_thread(threads)
            if thread is None:
                raise WebhookError(200, "Help Scout conversation without a thread written by the customer "
                                        "(agents' replies and notes are not classified)")
            return as_text(thread.get("body")) or "", as_text(thread.get("id"))
        if event == "convo.created" and as_text(get_in(payload, "createdBy", "type")) == "user":
            raise WebhookError(200, "Help Scout conversation started by an agent: no customer words yet")
        text = as_text(payload.get("preview")) or ""
        if not text.strip():
            raise WebhookError(422, "no customer thread body (and no preview) in the conversation payload")
        return text, None

    # -- API --------------------------------------------------------------------------------------------
    def _bearer(self, client: httpx.Client, *, refresh: bool = False) -> dict[str, str]:
        with self._lock:
            if self._app and (refresh or not self._token or time.time() >= self._expires_at):
                app_id, app_secret = self._app
                response = self._send(client, "POST", self.api_url("/v2/oauth2/token"), "help scout token",
                                      data={"grant_type": "client_credentials", "client_id": app_id,
                                            "client_secret": app_secret})
                data = self._json(response, "help scout token")
                token = as_text(get_in(data, "access_token"))
                if not token:
                    raise HelpdeskError("help scout token: no access_token in the response", permanent=True)
                expires_in = get_in(data, "expires_in")
                lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
                self._token, self._expires_at = token, time.time() + max(0.0, lifetime - 60)
            return {"Authorization": f"Bearer {self._token}"}

    def _call(self, client: httpx.Client, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._send(client, method, self.api_url(path), what, headers=self._bearer(client), **kwargs)
        except HelpdeskError as exc:
            if exc.status != 401 or not self._app:
                raise
            # an expired or revoked token: fetch a fresh one once
            return self._send(client, method, self.api_url(path), what,
                              headers=self._bearer(client, refresh=True), **kwargs)

    def list_tickets(self, client: httpx.Client, cursor: str | None, since: float | None) -> TicketPage:
        what = "list help scout conversations"
        page = int(cursor) if cursor else 1
        params: dict[str, Any] = {"status": "all", "embed": "threads", "sortField": "modifiedAt",
                                  "sortOrder": "asc", "page": page}
        if since:
            params["modifiedSince"] = iso_utc(since)
        data = self._json(self._call(client, "GET", "/v2/conversations", what, params=params), what)
        conversations = get_in(data, "_embedded", "conversations") or []
        if not isinstance(conversations, list):
            raise HelpdeskError(f"{what}: _embedded.conversations is not a list", status=200, permanent=True)
        messages, skipped = [], 0
        for conversation in conversations:
            try:
                message = self.parse(conversation, {EVENT_HEADER: "convo.created"})
            except WebhookError:
                message = None
            if message is None or as_text(get_in(conversation, "status")) == "spam":
                skipped += 1
                continue
            messages.append(history_message(
                self.name, message.ticket_id, message.text, subject=message.subject, channel=message.channel,
                tags=message.tags, url=message.url, updated=as_text(get_in(conversation, "modifiedAt")) or ""))
        total = get_in(data, "page", "totalPages")
        more = isinstance(total, int) and page < total
        return TicketPage(messages, str(page + 1) if more else None, skipped)

    def write_tags(self, client: httpx.Client, ticket_id: str, add: list[str], remove: list[str]) -> None:
        what = f"help scout conversation {ticket_id}"
        conversation = self._json(self._call(client, "GET", f"/v2/conversations/{quote_id(ticket_id)}",
                                             f"get {what}"), f"get {what}")
        current = list(split_tags(get_in(conversation, "tags")))
        merged = self.merged_tags(current, add, remove)
        if merged == current:
            return
        self._call(client, "PUT", f"/v2/conversations/{quote_id(ticket_id)}/tags", f"update tags of {what}",
                   json={"tags": merged})

    # -- set-up -------------------------------------------------------------------------------------------
    def check(self, client: httpx.Client) -> list[SetupStep]:
        """Get Resource Owner (`GET /v2/users/me`): proves the token (or app credentials) work."""
        what = "help scout users/me"
        user = self._json(self._call(client, "GET", "/v2/users/me", what), what)
        who = as_text(get_in(user, "email")) or as_text(get_in(user, "id")) or "the token's user"
        role = as_text(get_in(user, "role"))
        return [SetupStep("ok", "helpscout API", f"{self.base_url} reachable, authorised as {who}"
                          + (f" ({role})" if role else "") + "; tags are created by Help Scout when first set")]

    def _webhooks(self, client: httpx.Client) -> list[Mapping[str, Any]]:
        """Every webhook of the account (List Webhooks is a HAL page; a handful of pages at most)."""
        found: list[Mapping[str, Any]] = []
        for page in range(1, 21):
            data = self._json(self._call(client, "GET", "/v2/webhooks", "list help scout webhooks",
                                         params={"page": page}), "list help scout webhooks")
            hooks = get_in(data, "_embedded", "webhooks") or []
            found += [h for h in hooks if isinstance(h, Mapping)] if isinstance(hooks, list) else []
            total = get_in(data, "page", "totalPages")
            if not isinstance(total, int) or page >= total:
                break
        return found

    def setup(self, client: httpx.Client, webhook_url: str) -> list[SetupStep]:
        """`prepare` (nothing: tags need no set-up), then the webhook for `webhook_url` with our two events:
        created with a fresh secret, left alone when it exists with our events and TAGGER_HELPSCOUT_SECRET is set,
        else updated (Help Scout never shows a webhook's secret, so a missing one is replaced by a fresh one)."""
        steps = [*self.prepare(client)]
        events = sorted(CUSTOMER_EVENTS)
        what = f"webhook {webhook_url}"
        try:
            existing = next((h for h in self._webhooks(client) if as_text(h.get("url")) == webhook_url), None)
            if existing is None:
                secret = secrets.token_urlsafe(SECRET_BYTES)
                response = self._call(client, "POST", "/v2/webhooks", "create help scout webhook", json={
                    "url": webhook_url, "events": events, "secret": secret, "payloadVersion": "V2",
                    "notification": False, "label": "MOT Tagger"})
                hook_id = response.headers.get("Resource-ID") or "(new)"
                return [*steps, SetupStep("created", what, f"Help Scout webhook {hook_id} for {', '.join(events)}",
                                          env={"TAGGER_HELPSCOUT_SECRET": secret})]
            return [*steps, *self._keep_or_update(client, existing, webhook_url, events)]
        except HelpdeskError as exc:
            if exc.status != 403:
                raise
            return [*steps, SetupStep("manual", what, f"the API user may not manage webhooks ({exc}). In Help Scout: "
                                      "Manage > Apps > Webhooks > Install; Callback URL " + webhook_url + "; Secret "
                                      "Key = a random value of at most 40 characters, also set as "
                                      "TAGGER_HELPSCOUT_SECRET; events Conversation Created and Customer Replied; "
                                      "Payload Version V2; Save")]

    def _keep_or_update(self, client: httpx.Client, hook: Mapping[str, Any], webhook_url: str,
                        events: list[str]) -> list[SetupStep]:
        hook_id = as_text(hook.get("id")) or ""
        current = [e for e in hook.get("events") or [] if isinstance(e, str)]
        enabled = as_text(hook.get("state")) in (None, "enabled")
        complete = set(events) <= set(current) and hook.get("notification") is not True
        what = f"webhook {webhook_url}"
        steps: list[SetupStep] = []
        if complete and self.secret:
            steps.append(SetupStep("exists", what, f"Help Scout webhook {hook_id} already sends {', '.join(events)}; "
                                   "its secret cannot be read back: if deliveries are refused (401), unset "
                                   "TAGGER_HELPSCOUT_SECRET and run setup again for a new one"))
        else:
            secret = self.secret or secrets.token_urlsafe(SECRET_BYTES)
            self._call(client, "PUT", f"/v2/webhooks/{quote_id(hook_id)}", f"update help scout webhook {hook_id}",
                       json={"url": webhook_url, "events": sorted(set(current) | set(events)), "secret": secret,
                             "payloadVersion": "V2", "notification": False,
                             "label": as_text(hook.get("label")) or "MOT Tagger"})
            steps.append(SetupStep("updated", what, f"Help Scout webhook {hook_id} now sends {', '.join(events)}"
                                   + ("" if self.secret else " with a new secret"),
                                   env={} if self.secret else {"TAGGER_HELPSCOUT_SECRET": secret}))
        if not enabled:
            steps.append(SetupStep("manual", what, f"Help Scout webhook {hook_id} is {hook.get('state')!r} (Help Scout "
                                   "disables a webhook after failed deliveries): Manage > Apps > Webhooks > open it > "
                                   "Enable, once the tagger is reachable"))
        return steps
