"""Zammad: a webhook called by a trigger, tags through the Tags API.

Contract followed (documentation pages; Zammad's own code where the pages are silent):
- Webhook payload and headers: https://admin-docs.zammad.org/en/latest/manage/webhook/payload.html
  (source: zammad/zammad-admin-documentation, manage/webhook/payload.rst): the default body is
  `{"ticket": {...}, "article": {...}}` (Zammad's `TriggerWebhookJob::RecordPayload`), without the ticket's
  tags; headers `X-Zammad-Trigger` (trigger name), `X-Zammad-Delivery` (a random id per delivery) and
  `X-Hub-Signature` when an "HMAC SHA1 Signature Token" is set.
- Signature: https://admin-docs.zammad.org/en/latest/manage/webhook/add.html -- `X-Hub-Signature: sha1=<hex>`,
  the HMAC-SHA1 of the raw body with the token (Zammad's `UserAgent.set_signature`). No timestamp is signed
  and `X-Zammad-Delivery` is not signed, so the event id is the article id from the signed body: a captured
  delivery re-posted with any delivery header is the same event and is deduplicated.
- Who wrote an article: `article.sender` ("Customer", "Agent" or "System"; `sender_id` 2 is Customer, as the
  trigger API page says). `created_by` is whoever typed it: an agent logging a customer's call has sender
  "Customer", `created_by` the agent and `origin_by` the customer (the payload page's own example), so the
  sender decides; `internal` articles are never the customer's message to us.
- Tags: https://docs.zammad.org/en/latest/api/ticket/tags.html -- `GET /api/v1/tags?object=Ticket&o_id={id}`,
  `POST /api/v1/tags/add` and `DELETE /api/v1/tags/remove` with `{"item", "object": "Ticket", "o_id"}` (per
  tag, so nothing else is touched); `GET /api/v1/tag_search?term=` (ticket.agent) and the admin tag list
  `POST /api/v1/tag_list {"name": ...}` (admin.tag). With "New tags" off (Settings > Manage > Tags; setting
  `tag_new`) only users with admin.tag may use a tag that does not exist yet (`Tag.tag_allowed?`,
  app/models/tag.rb), so `prepare` creates ours up front.
- History: https://docs.zammad.org/en/latest/api/ticket/index.html (`GET /api/v1/tickets`, ordered by id, at
  most 100 a page: app/controllers/tickets_controller.rb); pagination `?page=N&per_page=M`, no total given
  (https://docs.zammad.org/en/latest/api/intro.html#pagination); articles:
  https://docs.zammad.org/en/latest/api/ticket/articles.html (`GET /api/v1/ticket_articles/by_ticket/{id}`).
- Set-up: https://docs.zammad.org/en/latest/api/webhook.html (`GET/POST /api/v1/webhooks`,
  `PUT /api/v1/webhooks/{id}`, admin.webhook; a stored signature token is never returned) and
  https://docs.zammad.org/en/latest/api/trigger.html (`GET/POST /api/v1/triggers`, `PUT /api/v1/triggers/{id}`,
  admin.trigger; `perform: {"notification.webhook": {"webhook_id": id}}`; trigger names are unique).
  Check: https://docs.zammad.org/en/latest/api/user.html (`GET /api/v1/users/me`).
- Auth: https://docs.zammad.org/en/latest/api/intro.html#authentication -- `Authorization: Token token=...`.
- Rate limits: Zammad documents none for the REST API; a 429 (with `Retry-After`) or a 5xx is retried anyway.

Environment: TAGGER_ZAMMAD_URL (https://zammad.example.com), TAGGER_ZAMMAD_TOKEN (access token with
ticket.agent; for `tagger setup zammad` also admin.tag, admin.webhook and admin.trigger), TAGGER_ZAMMAD_SECRET
(the webhook's HMAC SHA1 signature token).
"""
from __future__ import annotations

import datetime as dt
import json
import secrets
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
    quote_id,
    require,
    split_tags,
    stable_event_id,
    ticket_id_from,
)
from tagger.helpdesks.signing import HexHmac

SIGNATURE_HEADER = "X-Hub-Signature"
DELIVERY_HEADER = "X-Zammad-Delivery"
TRIGGER_HEADER = "X-Zammad-Trigger"
SECRET_ENV = "TAGGER_ZAMMAD_SECRET"
#: the names `setup` gives the webhook and the trigger (Zammad requires trigger names to be unique)
WEBHOOK_NAME = "MOT Tagger"
TRIGGER_NAME = "MOT Tagger"
#: Zammad's article senders by id (seeded; the trigger API page uses `article.sender_id` 2 for Customer)
SENDERS = {"1": "Agent", "2": "Customer", "3": "System"}
CUSTOMER = "Customer"
CUSTOMER_SENDER_ID = 2
FORBIDDEN = (401, 403)


def _sender(article: Mapping[str, Any]) -> str | None:
    """The article's sender name: `sender`, else the seeded name of `sender_id`; None when neither is set."""
    return as_text(article.get("sender")) or SENDERS.get(as_text(article.get("sender_id")) or "")


def _is_customer_article(article: Any) -> bool:
    """A public article with text whose sender is the customer (what `list_tickets` may classify)."""
    if not isinstance(article, Mapping) or _sender(article) != CUSTOMER or article.get("internal") is True:
        return False
    body = as_text(article.get("body"))
    return bool(body and body.strip())


def _article_order(article: Mapping[str, Any]) -> tuple[str, int]:
    """Sort key: creation time, then id (the listing is in creation order already; this makes sure)."""
    article_id = as_text(article.get("id")) or ""
    return as_text(article.get("created_at")) or "", int(article_id) if article_id.isdigit() else 0


def _epoch(value: str) -> float | None:
    """Zammad's `2021-11-03T11:51:13.809Z` as epoch seconds; None when unreadable."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()


def _named(items: list[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    """The first record whose `name` is `name`, ignoring case (Zammad compares trigger names so)."""
    return next((i for i in items if (as_text(i.get("name")) or "").lower() == name.lower()), None)


def _records(data: Any) -> list[Mapping[str, Any]]:
    return [item for item in (data if isinstance(data, list) else []) if isinstance(item, Mapping)]


class ZammadAdapter(BaseAdapter):
    name: ClassVar[str] = "zammad"
    #: the default webhook payload has the ticket and the article but not the ticket's tags
    payload_has_tags: ClassVar[bool] = False
    #: tickets a page of `GET /api/v1/tickets` (Zammad's maximum for that endpoint)
    per_page: ClassVar[int] = 100

    def __init__(self, *, base_url: str, token: str, **common: Any):
        super().__init__(base_url=base_url, **common)
        self._auth = {"Authorization": f"Token token={token}"}

    @classmethod
    def from_env(cls, env: Mapping[str, str], **common: Any) -> ZammadAdapter:
        return cls(base_url=cls.env_value(env, "URL", why="the Zammad base URL"),
                   token=cls.env_value(env, "TOKEN", why="a Zammad access token with ticket.agent permission"),
                   secret=cls.env_value(env, "SECRET", required=False), **common)

    def _call(self, client: httpx.Client, method: str, path: str, what: str, **kwargs: Any) -> Any:
        """One authenticated API call; its JSON answer (None for an empty body)."""
        response = self._send(client, method, self.api_url(path), what, headers=self._auth, **kwargs)
        return self._json(response, what) if response.content else None

    # -- webhook ----------------------------------------------------------------------------------------
    def scheme(self) -> HexHmac:
        return HexHmac(self._require_secret(), SIGNATURE_HEADER, "Zammad webhook", digest="sha1")

    def parse(self, payload: Any, headers: Mapping[str, str]) -> Message | None:
        ticket = require(payload, "ticket")
        if not isinstance(ticket, Mapping):
            raise WebhookError(422, "field ticket must be an object")
        ticket_id = ticket_id_from(ticket.get("id"), "ticket.id")
        article = payload.get("article")
        if not isinstance(article, Mapping) or not article:
            raise WebhookError(200, f"trigger fired on ticket {ticket_id} without an article (e.g. a state "
                                    "change): nothing the customer wrote")
        article_id = as_text(article.get("id"))
        which = f"article {article_id}" if article_id else "the article"
        sender = _sender(article)
        if sender != CUSTOMER:
            raise WebhookError(200, f"{which} was written by {sender or 'an unknown sender (no article.sender)'}"
                                    ", not by the customer: only customers' messages are classified")
        if article.get("internal") is True:
            raise WebhookError(200, f"{which} is an internal note, not a message from the customer")
        body = as_text(require(payload, "article", "body"))
        if body is None:
            raise WebhookError(422, "field article.body must be a string")
        if not body.strip():
            raise WebhookError(200, f"{which} has no text")
        article_type = as_text(article.get("type")) or ""
        typed_by = as_text(get_in(article, "created_by", "login")) or as_text(article.get("created_by")) or ""
        return Message(
            helpdesk=self.name, ticket_id=ticket_id, text=body,
            event_id=self._event_id(ticket_id, article, body), channel=channel_from(article_type),
            subject=as_text(ticket.get("title")) or as_text(article.get("subject")) or "",
            event_type=get_header(headers, TRIGGER_HEADER) or "article.created",
            tags=split_tags(ticket.get("tags")),       # only a custom payload has them; else read_tags is asked
            url=f"{self.base_url}/#ticket/zoom/{ticket_id}",
            author=as_text(article.get("from")),
            meta={"article_id": article_id, "article_type": article_type, "created_by": typed_by,
                  "content_type": as_text(article.get("content_type")) or "",
                  "delivery": get_header(headers, DELIVERY_HEADER) or ""},
        )

    def _event_id(self, ticket_id: str, article: Mapping[str, Any], body: str) -> str:
        """From the signed body only: the article id (unique in Zammad), else a hash of the article's content.
        `X-Zammad-Delivery` is left out on purpose: it is not signed, so a replay could simply change it."""
        article_id = as_text(article.get("id"))
        if article_id and article_id.isascii() and article_id.isdigit():
            return f"{self.name}:article:{article_id}"
        return stable_event_id(self.name, "article", ticket_id, as_text(article.get("created_at")), body)

    # -- API: tags --------------------------------------------------------------------------------------
    def read_tags(self, client: httpx.Client, ticket_id: str) -> tuple[str, ...]:
        """The ticket's tags now (`GET /api/v1/tags?object=Ticket&o_id=`), for corrections: the default
        webhook payload has none."""
        data = self._call(client, "GET", "/api/v1/tags", f"list tags of zammad ticket {ticket_id}",
                          params={"object": "Ticket", "o_id": str(ticket_id)})
        return split_tags(data.get("tags") if isinstance(data, Mapping) else None)

    def write_tags(self, client: httpx.Client, ticket_id: str, add: list[str], remove: list[str]) -> None:
        what = f"zammad ticket {ticket_id}"
        o_id: int | str = int(ticket_id) if ticket_id.isdigit() else ticket_id
        current = set(self.read_tags(client, ticket_id))
        for tag in dict.fromkeys(add):
            if tag not in current:
                try:
                    self._call(client, "POST", "/api/v1/tags/add", f"add tag {tag!r} to {what}",
                               json={"item": tag, "object": "Ticket", "o_id": o_id})
                except HelpdeskError as exc:
                    if exc.status != 422:
                        raise
                    # e.g. "New tags" off and the tag not in the tag list yet
                    raise HelpdeskError(f"{exc} (with 'New tags' off in Zammad a tag must exist first: run "
                                        "`tagger setup zammad`)", status=exc.status,
                                        retry_after=exc.retry_after, permanent=exc.permanent) from exc
        for tag in self.own_only(remove):
            if tag in current and tag not in add:
                self._call(client, "DELETE", "/api/v1/tags/remove", f"remove tag {tag!r} from {what}",
                           json={"item": tag, "object": "Ticket", "o_id": o_id})

    def _existing_tags(self, client: httpx.Client) -> set[str]:
        """Which of our tags are in Zammad's tag list: one `tag_search` per tag (ticket.agent may search; the
        admin list needs admin.tag and stops at 1000 names)."""
        found: set[str] = set()
        for tag in self.own_tag_names():
            data = self._call(client, "GET", "/api/v1/tag_search", f"search zammad tag {tag!r}",
                              params={"term": tag})
            if any(as_text(item.get("value")) == tag for item in _records(data)):
                found.add(tag)
        return found

    def prepare(self, client: httpx.Client) -> list[SetupStep]:
        """Make every tag we may write exist (admin tag list), so agents can pick them and Zammad accepts them
        even with "New tags" off. Idempotent: only the missing ones are created."""
        existing = self._existing_tags(client)
        steps = [SetupStep("exists", f"tag {tag}") for tag in self.own_tag_names() if tag in existing]
        missing = [tag for tag in self.own_tag_names() if tag not in existing]
        for tag in missing:
            try:
                self._call(client, "POST", "/api/v1/tag_list", f"create zammad tag {tag!r}", json={"name": tag})
            except HelpdeskError as exc:
                if exc.status in FORBIDDEN:
                    raise ConfigError(self._tags_fix(missing, exc.status)) from exc
                raise
            steps.append(SetupStep("created", f"tag {tag}", "in Zammad's tag list (Settings > Manage > Tags)"))
        return steps

    @staticmethod
    def _tags_fix(missing: list[str], status: int | None) -> str:
        names = ", ".join(missing)
        return (f"Zammad refused to create the tags {names} (HTTP {status}: creating tags needs the admin.tag "
                "permission). Until they exist agents cannot pick them, and with \"New tags\" off Zammad "
                "rejects them. Fix it one of two ways: (1) set TAGGER_ZAMMAD_TOKEN to a token of a user whose "
                "role has admin.tag (avatar > Profile > Token Access > Create, permissions ticket.agent and "
                "admin.tag) and run `tagger setup zammad` again; or (2) add them by hand in Settings > Manage > "
                f"Tags (type the name, add it) for each of: {names}.")

    # -- API: check and set-up ----------------------------------------------------------------------------
    def check(self, client: httpx.Client) -> list[SetupStep]:
        """Reachable and authorised (`GET /api/v1/users/me`), and which of our tags exist; changes nothing."""
        try:
            me = self._call(client, "GET", "/api/v1/users/me", "zammad current user")
        except HelpdeskError as exc:
            if exc.status in FORBIDDEN:
                raise ConfigError(f"Zammad at {self.base_url} refused TAGGER_ZAMMAD_TOKEN (HTTP {exc.status}): "
                                  "create a token under avatar > Profile > Token Access with permission "
                                  "ticket.agent and set it as TAGGER_ZAMMAD_TOKEN") from exc
            raise
        login = as_text(get_in(me, "login")) or as_text(get_in(me, "email")) or "?"
        steps = [SetupStep("ok", "zammad API", f"{self.base_url} reachable, token of {login} accepted")]
        existing = self._existing_tags(client)
        missing = [tag for tag in self.own_tag_names() if tag not in existing]
        if not missing:
            steps.append(SetupStep("ok", "tags", f"all {len(existing)} tags exist in Zammad's tag list"))
        fix = "run `tagger setup zammad` (token with admin.tag) or add it in Settings > Manage > Tags"
        steps.extend(SetupStep("missing", f"tag {tag}", fix) for tag in missing)
        return steps

    def setup(self, client: httpx.Client, webhook_url: str) -> list[SetupStep]:
        """`prepare`, then the webhook (with a signature token) and the trigger that calls it for every new
        customer article; found ones are reused, so running it twice creates nothing twice."""
        steps = self.prepare(client)
        webhook_id, step = self._ensure_webhook(client, webhook_url)
        steps.append(step)
        steps.append(self._manual_trigger() if webhook_id is None else self._ensure_trigger(client, webhook_id))
        return steps

    @staticmethod
    def _webhook_body(webhook_url: str, secret: str) -> dict[str, Any]:
        return {"name": WEBHOOK_NAME, "endpoint": webhook_url, "http_method": "post", "signature_token": secret,
                "ssl_verify": webhook_url.lower().startswith("https://"), "customized_payload": False,
                "note": "MOT Tagger: classifies customer messages and tags the ticket.", "active": True}

    def _ensure_webhook(self, client: httpx.Client, webhook_url: str) -> tuple[str | None, SetupStep]:
        """Find the webhook for `webhook_url` (or the one named ours) and give it our signature token, or create
        it with a fresh one (returned in `env`). Zammad never shows a stored token, so a found webhook gets the
        configured secret again (a fresh one, in `env`, when none is configured)."""
        what = f"webhook {webhook_url}"
        try:
            hooks = _records(self._call(client, "GET", "/api/v1/webhooks", "list zammad webhooks"))
        except HelpdeskError as exc:
            if exc.status in FORBIDDEN:
                return None, self._manual_webhook(webhook_url, exc.status)
            raise
        found = (next((h for h in hooks if as_text(h.get("endpoint")) == webhook_url), None)
                 or _named(hooks, WEBHOOK_NAME))
        if found is None:
            secret = secrets.token_urlsafe(32)
            created = self._call(client, "POST", "/api/v1/webhooks", f"create zammad {what}",
                                 json=self._webhook_body(webhook_url, secret))
            hook_id = as_text(get_in(created, "id"))
            if not hook_id:
                raise HelpdeskError(f"create zammad {what}: no id in the response", status=200, permanent=True)
            return hook_id, SetupStep("created", what, f"Zammad webhook {hook_id}, signed with a fresh HMAC-SHA1 "
                                                       "token", {SECRET_ENV: secret})
        secret = self.secret or secrets.token_urlsafe(32)
        env = {} if self.secret else {SECRET_ENV: secret}
        body = self._webhook_body(webhook_url, secret)
        hook_id = as_text(found.get("id")) or ""
        self._call(client, "PUT", f"/api/v1/webhooks/{quote_id(hook_id)}", f"update zammad {what}", json=body)
        if as_text(found.get("endpoint")) != webhook_url:
            detail = f"Zammad webhook {hook_id} ({WEBHOOK_NAME}) now points at {webhook_url}"
            return hook_id, SetupStep("updated", what, detail, env)
        if self.secret and found.get("active") is not False:
            detail = f"Zammad webhook {hook_id}; its signature token was set to {SECRET_ENV} again"
            return hook_id, SetupStep("exists", what, detail)
        detail = f"Zammad webhook {hook_id}: active, with a {'fresh ' if env else ''}signature token"
        return hook_id, SetupStep("updated", what, detail, env)

    @staticmethod
    def _trigger_body(webhook_id: str) -> dict[str, Any]:
        """Every new article whose sender is the customer calls our webhook (`parse` checks again)."""
        return {"name": TRIGGER_NAME,
                "condition": {"article.action": {"operator": "is", "value": "create"},
                              "article.sender_id": {"operator": "is", "value": CUSTOMER_SENDER_ID}},
                "perform": {"notification.webhook": {
                    "webhook_id": int(webhook_id) if webhook_id.isdigit() else webhook_id}},
                "activator": "action", "execution_condition_mode": "selective", "active": True,
                "note": "MOT Tagger: sends each new customer article to the tagger."}

    def _ensure_trigger(self, client: httpx.Client, webhook_id: str) -> SetupStep:
        """Keep a trigger that already calls the webhook (switched on), else point the one named ours at it,
        else create it."""
        what = f"trigger {TRIGGER_NAME}"
        try:
            triggers = _records(self._call(client, "GET", "/api/v1/triggers", "list zammad triggers"))
        except HelpdeskError as exc:
            if exc.status in FORBIDDEN:
                return self._manual_trigger(exc.status)
            raise
        calling = next((t for t in triggers if as_text(
            get_in(t, "perform", "notification.webhook", "webhook_id")) == webhook_id), None)
        if calling is not None:
            trigger_id = as_text(calling.get("id")) or ""
            name = f"trigger {as_text(calling.get('name')) or TRIGGER_NAME}"
            if calling.get("active") is False:
                self._call(client, "PUT", f"/api/v1/triggers/{quote_id(trigger_id)}",
                           f"switch on zammad trigger {trigger_id}", json={"active": True})
                return SetupStep("updated", name, f"Zammad trigger {trigger_id} switched on")
            return SetupStep("exists", name, f"Zammad trigger {trigger_id} calls webhook {webhook_id}")
        body = self._trigger_body(webhook_id)
        named = _named(triggers, TRIGGER_NAME)
        if named is not None:
            trigger_id = as_text(named.get("id")) or ""
            self._call(client, "PUT", f"/api/v1/triggers/{quote_id(trigger_id)}", f"update zammad {what}",
                       json=body)
            return SetupStep("updated", what, f"Zammad trigger {trigger_id} now calls webhook {webhook_id}")
        created = self._call(client, "POST", "/api/v1/triggers", f"create zammad {what}", json=body)
        trigger_id = as_text(get_in(created, "id")) or "?"
        return SetupStep("created", what, f"Zammad trigger {trigger_id}: new customer articles call webhook "
                                          f"{webhook_id}")

    def _manual_webhook(self, webhook_url: str, status: int | None) -> SetupStep:
        secret = self.secret or secrets.token_urlsafe(32)
        verify = "yes" if webhook_url.lower().startswith("https://") else "no"
        return SetupStep(
            "manual", f"webhook {webhook_url}",
            f"this token may not manage webhooks (HTTP {status}; needs admin.webhook and admin.trigger). Give "
            "it those permissions and run `tagger setup zammad` again, or in Zammad: Settings > Manage > "
            f"Webhook > New Webhook: Name \"{WEBHOOK_NAME}\", Endpoint {webhook_url}, HMAC SHA1 Signature "
            f"Token {secret}, SSL Verify {verify}, no custom payload, Active; Submit. Then the trigger below.",
            {} if self.secret else {SECRET_ENV: secret})

    @staticmethod
    def _manual_trigger(status: int | None = None) -> SetupStep:
        why = f"this token may not manage triggers (HTTP {status}; needs admin.trigger). " if status else ""
        return SetupStep(
            "manual", f"trigger {TRIGGER_NAME}",
            f"{why}In Zammad: Settings > Manage > Trigger > New Trigger: Name \"{TRIGGER_NAME}\", Activated by "
            "Action, Action execution Selective; Conditions: Article > Action is created, and Article > "
            f"Sender is Customer; Execute changes: Notification > Webhook > \"{WEBHOOK_NAME}\"; Active yes; "
            "Submit.")

    # -- API: history -------------------------------------------------------------------------------------
    def list_tickets(self, client: httpx.Client, cursor: str | None, since: float | None) -> TicketPage:
        """One page of `GET /api/v1/tickets` (oldest ticket first: Zammad orders by id), each ticket as its
        customer's last public article (what the webhook path classified last), with its current tags.
        Tickets not updated since `since`, merged ones and those without customer text are skipped."""
        what = "zammad list tickets"
        page = self._cursor_page(cursor)
        tickets = self._call(client, "GET", "/api/v1/tickets", what,
                             params={"page": page, "per_page": self.per_page, "expand": "true"})
        if not isinstance(tickets, list):
            raise HelpdeskError(f"{what}: expected a JSON list of tickets", status=200, permanent=True)
        messages, skipped = [], 0
        for ticket in tickets:
            message = self._history(client, ticket, since) if isinstance(ticket, Mapping) else None
            if message is None:
                skipped += 1
            else:
                messages.append(message)
        # Zammad gives no total: a short page is the last one (per_page is the endpoint's maximum)
        following = json.dumps({"page": page + 1}) if len(tickets) >= self.per_page else None
        return TicketPage(messages, following, skipped)

    @staticmethod
    def _cursor_page(cursor: str | None) -> int:
        if not cursor:
            return 1
        try:
            page = json.loads(cursor).get("page")
        except (ValueError, AttributeError):
            page = None
        if not isinstance(page, int) or page < 1:
            raise HelpdeskError(f"zammad list tickets: unreadable cursor {cursor[:80]!r}", permanent=True)
        return page

    def _history(self, client: httpx.Client, ticket: Mapping[str, Any], since: float | None) -> Message | None:
        """One listed ticket as a backfill message, or None when it has nothing of the customer's to classify."""
        ticket_id = as_text(ticket.get("id")) or ""
        state = (as_text(ticket.get("state")) or "").lower()
        if not (ticket_id.isascii() and ticket_id.isdigit()) or state == "merged":
            return None
        updated = as_text(ticket.get("updated_at")) or ""
        changed = _epoch(updated) if updated else None
        if since and changed is not None and changed < since:
            return None
        articles = self._call(client, "GET", f"/api/v1/ticket_articles/by_ticket/{ticket_id}",
                              f"list articles of zammad ticket {ticket_id}", params={"expand": "true"})
        customer = sorted(filter(_is_customer_article, articles if isinstance(articles, list) else []),
                          key=_article_order)
        if not customer:
            return None
        last = customer[-1]
        return history_message(
            self.name, ticket_id, as_text(last.get("body")) or "", subject=as_text(ticket.get("title")) or "",
            channel=channel_from(as_text(last.get("type"))), tags=self.read_tags(client, ticket_id),
            url=f"{self.base_url}/#ticket/zoom/{ticket_id}", updated=updated, status=state,
            article_id=as_text(last.get("id")), customer_articles=len(customer))
