"""django-helpdesk: its new-ticket and follow-up webhooks, labels written to custom fields through its REST API.

Contract followed (django-helpdesk 2.6, read in the installed package and in django-helpdesk/django-helpdesk):
- Webhooks (docs/webhooks.rst; helpdesk/webhooks.py, helpdesk/settings.py): the URLs come from the Django settings
  `HELPDESK_GET_NEW_TICKET_WEBHOOK_URLS` / `HELPDESK_GET_FOLLOWUP_WEBHOOK_URLS` (callables returning a list) or the
  environment variables `HELPDESK_NEW_TICKET_WEBHOOK_URLS` / `HELPDESK_FOLLOWUP_WEBHOOK_URLS`. django-helpdesk
  POSTs `{"ticket": <TicketSerializer data>, "queue_slug": ...}` when a ticket is created and the same plus
  `"followup_id"` when a follow-up is added (agent reply, status change, custom-field edit in the staff UI, or a
  customer's e-mail reply). Deliveries carry no signature, no delivery id and no custom header, and are not retried.
- Ticket data (helpdesk/serializers.py `TicketSerializer`): `id`, `title`, `description`, `submitter_email`,
  `followup_set` (`id`, `user` (null for e-mail replies), `public`, `comment`, `date`, ...) and every custom field
  as `custom_<name>`.
- Tickets have no tag list (no tag model or field in helpdesk/models.py), so the labels go into custom fields
  created for the purpose (see docs/helpdesks.md): `mot_stage` (e.g. `smot`), `mot_sentiment` (e.g. `negative`)
  and, optional, `mot_review` (boolean: the guess is unsure).
- REST API (helpdesk/views/api.py `TicketViewSet`, staff only): `GET` and `PATCH /api/tickets/{id}/`; a PATCH that
  names only `custom_<name>` keys changes only those custom fields (`TicketSerializer.update` ->
  `save_custom_field_values`). Unknown `custom_*` keys are silently dropped by DRF, so the ticket is read first
  and a missing field is reported. Authentication: HTTP Basic (DRF's default `BasicAuthentication`).

- History (`tagger backfill --helpdesk djangohelpdesk`): `GET /api/tickets/?page_size=100`, DRF's page-number
  pagination (`count`, `next` (absolute URL or null), `results`: TicketSerializer data, the same as a webhook's
  `ticket`), so the same text is classified as for a webhook. The API has no "changed since" filter; `since` is
  applied to the date of each ticket's newest follow-up.

What is classified: on ticket creation, title + description; on a follow-up, the newest customer message, i.e.
the newest follow-up made from a customer's e-mail after the opening one, else the description. The author fields
of a follow-up (helpdesk/update_ticket.py, helpdesk/email.py) are `user` -- set only when a staff member wrote it --,
`public` and `message_id` -- the Message-ID of the e-mail it was made from. So a customer's message is a public
follow-up without a user and with a `message_id`; other follow-ups without a user are django-helpdesk's own text
("Ticket escalated after 3 days" from escalate_tickets, "Submitter accepted resolution and closed ticket" from the
public view) and are never classified. A follow-up by an agent (or such a system one) therefore repeats the text we
classified last, which the service answers as `unchanged` (our own labels) or records as a `correction` (an agent
changed `mot_stage` / `mot_sentiment`).

Set-up: custom fields cannot be created through the REST API (they are Django admin models), so `prepare` and
`check` only read which exist: DRF's metadata answer to `OPTIONS /api/tickets/` (SimpleMetadata: `actions.POST`
lists every writable field, `custom_<name>` included, with a list field's `choices`; staff only, like the rest of
the API). A missing stage or sentiment field makes `prepare` raise `ConfigError` with the fix; `setup` then returns
the settings to paste (`SetupStep("manual", ...)`), since django-helpdesk's webhooks are Django settings.

Webhook authentication: django-helpdesk cannot sign or add headers, so the shared token goes into the webhook URL:
`https://<tagger>/webhooks/djangohelpdesk?token=<secret>`.

Environment: TAGGER_DJANGOHELPDESK_URL (where `helpdesk.urls` is mounted, e.g. https://example.com/helpdesk),
TAGGER_DJANGOHELPDESK_USER and TAGGER_DJANGOHELPDESK_PASSWORD (a staff account with access to the queues),
TAGGER_DJANGOHELPDESK_SECRET (the shared token; TAGGER_DJANGOHELPDESK_TOKEN is accepted as another name for it),
optional TAGGER_DJANGOHELPDESK_STAGE_FIELD / _SENTIMENT_FIELD / _REVIEW_FIELD (custom field names, default
mot_stage / mot_sentiment / mot_review).
"""
from __future__ import annotations

import base64
import logging
import re
import secrets
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from tagger.errors import ConfigError, HelpdeskError, WebhookError
from tagger.helpdesks.contract import BaseAdapter, Message, SetupStep, TicketPage
from tagger.helpdesks.payload import (
    as_text,
    get_in,
    history_message,
    quote_id,
    require,
    stable_event_id,
    ticket_id_from,
)
from tagger.helpdesks.signing import SharedToken
from tagger.labels import SENTIMENTS, STAGES, labels_from_tags, review_tag, sentiment_tag, stage_tag

log = logging.getLogger("tagger.helpdesks.djangohelpdesk")

def _epoch(value: str) -> float:
    """A DRF datetime (`2026-11-23T10:00:00.123456Z` or with an offset) as epoch seconds; 0 when unreadable."""
    import datetime as dt

    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return parsed.timestamp() if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC).timestamp()


DEFAULT_FIELDS = {"stage": "mot_stage", "sentiment": "mot_sentiment", "review": "mot_review"}
_FIELD_NAME_RE = re.compile(r"^[-A-Za-z0-9_]{1,50}$")     # CustomField.name is a SlugField


class DjangoHelpdeskAdapter(BaseAdapter):
    name: ClassVar[str] = "djangohelpdesk"

    def __init__(self, *, base_url: str, user: str, password: str, stage_field: str = DEFAULT_FIELDS["stage"],
                 sentiment_field: str = DEFAULT_FIELDS["sentiment"], review_field: str = DEFAULT_FIELDS["review"],
                 **common: Any):
        super().__init__(base_url=base_url, **common)
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError("TAGGER_DJANGOHELPDESK_URL must be an http(s) URL, where helpdesk.urls is mounted "
                              "(e.g. https://example.com/helpdesk)")
        for what, value in (("STAGE_FIELD", stage_field), ("SENTIMENT_FIELD", sentiment_field),
                            ("REVIEW_FIELD", review_field)):
            if not _FIELD_NAME_RE.match(value):
                raise ConfigError(f"TAGGER_DJANGOHELPDESK_{what}={value!r} is not a custom field name "
                                  "(letters, digits, - and _)")
        self.stage_key, self.sentiment_key = f"custom_{stage_field}", f"custom_{sentiment_field}"
        self.review_key = f"custom_{review_field}"
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._auth = {"Authorization": f"Basic {basic}"}
        self._warned_no_review = False

    @classmethod
    def from_env(cls, env: Mapping[str, str], **common: Any) -> DjangoHelpdeskAdapter:
        secret = cls.env_value(env, "SECRET", required=False)
        alias = cls.env_value(env, "TOKEN", required=False)
        if secret and alias and secret != alias:
            raise ConfigError("TAGGER_DJANGOHELPDESK_SECRET and TAGGER_DJANGOHELPDESK_TOKEN are both set and differ; "
                              "they name the same shared token, set one")
        return cls(base_url=cls.env_value(env, "URL", why="the URL where django-helpdesk is mounted, "
                                                           "e.g. https://example.com/helpdesk"),
                   user=cls.env_value(env, "USER", why="a django-helpdesk staff user for the REST API"),
                   password=cls.env_value(env, "PASSWORD", why="the password of TAGGER_DJANGOHELPDESK_USER"),
                   stage_field=cls.env_value(env, "STAGE_FIELD", default=DEFAULT_FIELDS["stage"]),
                   sentiment_field=cls.env_value(env, "SENTIMENT_FIELD", default=DEFAULT_FIELDS["sentiment"]),
                   review_field=cls.env_value(env, "REVIEW_FIELD", default=DEFAULT_FIELDS["review"]),
                   secret=secret or alias, **common)

    # -- webhook ----------------------------------------------------------------------------------------
    def scheme(self) -> SharedToken:
        return SharedToken(self._require_secret(),
                           refusal="django-helpdesk does not sign webhooks: the shared token (?token= in the "
                                   "webhook URL, or an X-Tagger-Token header) is missing or wrong")

    def parse(self, payload: Any, headers: Mapping[str, str]) -> Message | None:
        if not isinstance(payload, Mapping):
            raise WebhookError(422, "payload must be a JSON object {\"ticket\": ..., \"queue_slug\": ...}")
        ticket = require(payload, "ticket")
        if not isinstance(ticket, Mapping):
            raise WebhookError(422, "field ticket must be an object")
        ticket_id = ticket_id_from(ticket.get("id"), "ticket.id")
        followups = _followups(ticket.get("followup_set"))
        is_followup = payload.get("followup_id") is not None
        if is_followup:
            followup_id = as_text(payload.get("followup_id"))
            if followup_id is None or not (followup_id.isascii() and followup_id.isdigit()):
                raise WebhookError(422, "field followup_id must be a follow-up id")
        else:
            followup_id = followups[0][0] if followups else None     # the "Ticket Opened" follow-up
        text = _customer_text(followups) or as_text(ticket.get("description")) or ""
        if not text.strip():
            return None
        subject = as_text(ticket.get("title")) or ""
        followup = next((f for fid, f in followups if fid == followup_id), {})
        opening = followups[0][0] if followups else None
        kind = "followup.created" if is_followup else "ticket.created"
        anchor: tuple[Any, ...] = (followup_id, as_text(followup.get("date"))) if followup_id else (subject, text)
        return Message(
            helpdesk=self.name, ticket_id=ticket_id, text=text,
            event_id=stable_event_id(self.name, ticket_id, kind, *anchor),
            channel="ticket", subject=subject, event_type=kind, tags=self._tags(ticket),
            url=f"{self.base_url}/tickets/{ticket_id}/",
            author=as_text(ticket.get("submitter_email")),
            meta={"queue_slug": as_text(payload.get("queue_slug")) or "", "followup_id": followup_id,
                  "customer_reply": bool(followup) and followup_id != opening and _is_customer(followup)},
        )

    def _tags(self, ticket: Mapping[str, Any]) -> tuple[str, ...]:
        """The labels in the ticket's custom fields, as our tags (so corrections and our own writes are seen)."""
        tags = []
        stage = _label(ticket.get(self.stage_key), STAGES, self.stage_prefix)
        if stage:
            tags.append(stage_tag(stage, self.stage_prefix))
        sentiment = _label(ticket.get(self.sentiment_key), SENTIMENTS, self.sentiment_prefix)
        if sentiment:
            tags.append(sentiment_tag(sentiment, self.sentiment_prefix))
        if ticket.get(self.review_key) is True:
            tags.append(review_tag(self.stage_prefix))
        return tuple(tags)

    # -- API --------------------------------------------------------------------------------------------
    def list_tickets(self, client: httpx.Client, cursor: str | None, since: float | None) -> TicketPage:
        what = "django-helpdesk list tickets"
        url = cursor or self.api_url("/api/tickets/?page_size=100")
        data = self._json(self._send(client, "GET", url, what, headers=self._auth), what)
        results = data.get("results") if isinstance(data, Mapping) else None
        if not isinstance(results, list):
            raise HelpdeskError(f"{what}: no results list (is DRF pagination on?)", status=200, permanent=True)
        messages, skipped = [], 0
        for ticket in results:
            try:
                message = self.parse({"ticket": ticket}, {})
            except WebhookError:
                message = None
            newest = max((as_text(f.get("date")) or "" for _i, f in _followups(get_in(ticket, "followup_set"))),
                         default="")
            if message is None or (since and newest and _epoch(newest) < since):
                skipped += 1
                continue
            messages.append(history_message(self.name, message.ticket_id, message.text, subject=message.subject,
                                            tags=message.tags, url=message.url, updated=newest))
        following = as_text(data.get("next"))
        origin = "/".join(self.base_url.split("/", 3)[:3]) + "/"     # scheme://host[:port]/
        if following and not following.startswith(origin):           # never send our credentials elsewhere
            raise HelpdeskError(f"{what}: the next page {following[:80]!r} is not on {self.base_url}", permanent=True)
        return TicketPage(messages, following or None, skipped)

    def write_tags(self, client: httpx.Client, ticket_id: str, add: list[str], remove: list[str]) -> None:
        """Set our custom fields from the tags: `mot_smot` -> mot_stage "smot", `sentiment_negative` ->
        mot_sentiment "negative", `mot_review` -> mot_review true/false. Only those keys are PATCHed."""
        url = self.api_url(f"/api/tickets/{quote_id(ticket_id)}/")
        what = f"django-helpdesk ticket {ticket_id}"
        ticket = self._json(self._send(client, "GET", url, f"get {what}", headers=self._auth), f"get {what}")
        if not isinstance(ticket, Mapping):
            raise HelpdeskError(f"get {what}: expected a JSON object", permanent=False)
        missing = [key[len("custom_"):] for key in (self.stage_key, self.sentiment_key) if key not in ticket]
        if missing:
            raise HelpdeskError(f"{what}: custom field(s) {', '.join(missing)} not found; create them in the "
                                "Django admin (Helpdesk > Custom fields, staff only) as docs/helpdesks.md says",
                                permanent=True)
        wanted = self._wanted(ticket, add, remove, what)
        change = {key: value for key, value in wanted.items() if ticket.get(key) != value}
        if not change:
            return
        response = self._send(client, "PATCH", url, f"update custom fields of {what}", json=change,
                              headers=self._auth)
        data = self._json(response, f"update custom fields of {what}")
        ignored = [key for key, value in change.items() if not isinstance(data, Mapping) or data.get(key) != value]
        if ignored:
            raise HelpdeskError(f"{what}: django-helpdesk did not store {', '.join(ignored)} (check the custom "
                                "fields' type: text or a list that offers the label)", permanent=True)

    def _wanted(self, ticket: Mapping[str, Any], add: list[str], remove: list[str], what: str) -> dict[str, Any]:
        stage, sentiment = labels_from_tags(set(add), stage_prefix=self.stage_prefix,
                                            sentiment_prefix=self.sentiment_prefix)
        stale = set(self.own_only(remove)) - set(add)
        wanted: dict[str, Any] = {}
        for key, label, allowed, prefix, to_tag in (
                (self.stage_key, stage, STAGES, self.stage_prefix, stage_tag),
                (self.sentiment_key, sentiment, SENTIMENTS, self.sentiment_prefix, sentiment_tag)):
            current = _label(ticket.get(key), allowed, prefix)
            if label:
                wanted[key] = label
            elif current and to_tag(current, prefix) in stale:
                wanted[key] = ""                   # our stale label, nothing new to put there
        review = review_tag(self.stage_prefix)
        if self.review_key in ticket:
            if review in add:
                wanted[self.review_key] = True
            elif review in stale:
                wanted[self.review_key] = False
        elif review in add and not self._warned_no_review:
            self._warned_no_review = True
            log.warning("%s: no custom field %s, so an unsure guess cannot be flagged for review",
                        what, self.review_key[len("custom_"):])
        return wanted

    def read_tags(self, client: httpx.Client, ticket_id: str) -> tuple[str, ...]:
        """Our labels as tags, from the ticket's custom fields (`GET /api/tickets/{id}/`)."""
        what = f"get django-helpdesk ticket {ticket_id}"
        ticket = self._json(self._send(client, "GET", self.api_url(f"/api/tickets/{quote_id(ticket_id)}/"), what,
                                       headers=self._auth), what)
        return self._tags(ticket) if isinstance(ticket, Mapping) else ()

    # -- set-up -------------------------------------------------------------------------------------------
    def _fields(self, client: httpx.Client) -> dict[str, Any] | None:
        """The ticket fields the API accepts (DRF metadata of `OPTIONS /api/tickets/`), None if not offered."""
        what = "django-helpdesk OPTIONS /api/tickets/"
        try:
            data = self._json(self._send(client, "OPTIONS", self.api_url("/api/tickets/"), what,
                                         headers=self._auth), what)
        except HelpdeskError as exc:
            if exc.status in (401, 403):
                raise HelpdeskError(f"{exc}: TAGGER_DJANGOHELPDESK_USER must be a staff user (is_staff) whose "
                                    "password is TAGGER_DJANGOHELPDESK_PASSWORD; the REST API is for staff only",
                                    status=exc.status, permanent=True) from exc
            raise
        fields = get_in(data, "actions", "POST")
        return dict(fields) if isinstance(fields, Mapping) else None

    def _field_steps(self, fields: Mapping[str, Any]) -> tuple[list[SetupStep], list[str]]:
        """One step per custom field of ours, and the required ones that are missing or cannot hold our labels."""
        steps, bad = [], []
        for key, allowed, required in ((self.stage_key, STAGES, True), (self.sentiment_key, SENTIMENTS, True),
                                       (self.review_key, (), False)):
            name = key[len("custom_"):]
            info = fields.get(key)
            if not isinstance(info, Mapping):
                steps.append(SetupStep("missing", f"custom field {name}",
                                       "required" if required else "optional: unsure guesses are not flagged"))
                if required:
                    bad.append(name)
                continue
            offered = {as_text(c.get("value")) for c in info.get("choices") or [] if isinstance(c, Mapping)}
            lacking = [label for label in allowed if info.get("choices") is not None and label not in offered]
            if lacking:
                steps.append(SetupStep("missing", f"custom field {name}", f"its list lacks {', '.join(lacking)}"))
                bad.append(name)
            else:
                steps.append(SetupStep("exists", f"custom field {name}", f"type {info.get('type', '?')}"))
        return steps, bad

    def prepare(self, client: httpx.Client) -> list[SetupStep]:
        """The custom fields must exist (the REST API cannot create them): what exists, or ConfigError with the fix."""
        fields = self._fields(client)
        if fields is None:
            return [SetupStep("manual", "custom fields", "django-helpdesk did not list the ticket fields (DRF "
                              "metadata off?); check them in the Django admin as docs/helpdesks.md says")]
        steps, bad = self._field_steps(fields)
        if bad:
            stage, sentiment, review = (k[len("custom_"):] for k in (self.stage_key, self.sentiment_key,
                                                                       self.review_key))
            raise ConfigError(f"django-helpdesk custom field(s) {', '.join(bad)} missing or incomplete: Django admin "
                              f"> Helpdesk > Custom fields > Add: {stage} (List: {', '.join(STAGES)}), {sentiment} "
                              f"(List: {', '.join(SENTIMENTS)}), {review} (Boolean, optional); tick Staff only "
                              "(docs/helpdesks.md)")
        return steps

    def check(self, client: httpx.Client) -> list[SetupStep]:
        """Read-only (`OPTIONS /api/tickets/`, staff only): authorised, and which of our custom fields exist."""
        fields = self._fields(client)
        ok = SetupStep("ok", "django-helpdesk API", f"{self.base_url}/api/tickets/ reachable, staff user authorised")
        if fields is None:
            return [ok, SetupStep("manual", "custom fields", "not listed by the API (DRF metadata off?); check them "
                                  "in the Django admin")]
        return [ok, *self._field_steps(fields)[0]]

    def setup(self, client: httpx.Client, webhook_url: str) -> list[SetupStep]:
        """`prepare`, then the Django settings that send the webhooks (django-helpdesk has no API for them)."""
        steps = self.prepare(client)
        token = self.secret or secrets.token_urlsafe(32)
        env = {} if self.secret else {"TAGGER_DJANGOHELPDESK_SECRET": token}
        shown = token if not self.secret else "<the value of TAGGER_DJANGOHELPDESK_SECRET>"
        settings = (f'TAGGER_WEBHOOK = "{webhook_url}?token={shown}"\n\n'
                    "def HELPDESK_GET_NEW_TICKET_WEBHOOK_URLS():\n    return [TAGGER_WEBHOOK]\n\n"
                    "def HELPDESK_GET_FOLLOWUP_WEBHOOK_URLS():\n    return [TAGGER_WEBHOOK]\n")
        return [*steps, SetupStep("manual", f"webhook {webhook_url}",
                                  "add to your Django project's settings.py, then restart django-helpdesk:\n"
                                  + settings, env=env)]


def _followups(value: Any) -> list[tuple[str, Mapping[str, Any]]]:
    """(id, follow-up) pairs of `followup_set` in id order; entries without a usable id are left out."""
    items = []
    for followup in value if isinstance(value, list) else []:
        if isinstance(followup, Mapping):
            fid = as_text(followup.get("id"))
            if fid and fid.isascii() and fid.isdigit():
                items.append((fid, followup))
    return sorted(items, key=lambda item: int(item[0]))


def _is_customer(followup: Mapping[str, Any]) -> bool:
    """A customer's message: a public follow-up without a user that django-helpdesk made from a received e-mail
    (it carries the e-mail's Message-ID). `user` is set only for staff; escalations and "Submitter accepted
    resolution" are public, without a user and without a Message-ID: django-helpdesk's words, not the customer's."""
    return (followup.get("user") is None and followup.get("public") is True
            and bool((as_text(followup.get("message_id")) or "").strip()))


def _customer_text(followups: list[tuple[str, Mapping[str, Any]]]) -> str | None:
    """The newest customer reply after the opening follow-up (which repeats the description), if any."""
    for _fid, followup in reversed(followups[1:]):
        comment = as_text(followup.get("comment"))
        if _is_customer(followup) and comment and comment.strip():
            return comment
    return None


def _label(value: Any, allowed: tuple[str, ...], prefix: str) -> str | None:
    """A custom field's value as one of `allowed` (`smot`, also `mot_smot`, any case); None otherwise."""
    text = (as_text(value) or "").strip().lower()
    if prefix and text.startswith(prefix.lower()):
        text = text[len(prefix):]
    return text if text in allowed else None
