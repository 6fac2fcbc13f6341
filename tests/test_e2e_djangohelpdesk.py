"""End to end against a REAL django-helpdesk: the helpdesk from PyPI runs as `manage.py runserver` on 127.0.0.1,
our service (create_app, the shipped model of models/, a SQLite store, the outbox worker) runs under uvicorn on
127.0.0.1, and nothing in between is faked.

django-helpdesk posts its own webhooks (new ticket, follow-up; `HELPDESK_GET_*_WEBHOOK_URLS` in its settings) to
`/webhooks/djangohelpdesk?token=...`; the worker writes the labels back through django-helpdesk's REST API into
the custom fields `mot_stage`, `mot_sentiment`, `mot_review`. Covered: a new ticket gets the model's labels and
nothing else on it changes; our own write triggers no webhook and is written once; an agent's follow-up changes
nothing; an agent's change of the stage is recorded as a correction and not overwritten; a customer's e-mail reply
(django-helpdesk's own mail pipeline, `helpdesk.email.extract_email_metadata`) is classified and written.

Without django-helpdesk installed, or when it cannot be started here, the tests skip and say why.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import secrets
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tagger.config import Settings
from tagger.service.app import create_app
from tests.standin import PROXY_VARS, LiveServer, free_port, local_client, wait_until

pytestmark = pytest.mark.slow

HELPDESK = "djangohelpdesk"
TITLE = "Pasūtījums nav atnācis"
COMPLAINT = "Mans pasūtījums vēl nav atnācis, jau 2 nedēļas!"
THANKS = "Paldies, paka šodien beidzot atnāca! Viss ir kārtībā, liels paldies par palīdzību!"
OURS = ("custom_mot_stage", "custom_mot_sentiment", "custom_mot_review")
WAIT_S = 30.0

SETTINGS_PY = '''
import os
SECRET_KEY = "e2e-only-" + "x" * 40
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions", "django.contrib.sites",
    "django.contrib.admin", "django.contrib.messages", "django.contrib.humanize", "rest_framework", "helpdesk",
]
SITE_ID = 1
HELPDESK_TEAMS_MODE_ENABLED = False          # no pinax-teams
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware", "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware", "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware", "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "dh_urls"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True, "OPTIONS": {
    "context_processors": ["django.template.context_processors.request",
                           "django.contrib.auth.context_processors.auth",
                           "django.contrib.messages.context_processors.messages"]}}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(os.path.dirname(__file__),
                                                                                      "helpdesk.sqlite3"),
                         "OPTIONS": {"timeout": 20}}}
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
USE_TZ = True
STATIC_URL = "/static/"
MEDIA_ROOT = os.path.join(os.path.dirname(__file__), "media")
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "handlers": {"console": {"class": "logging.StreamHandler"}},
           "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"},
                       "helpdesk": {"handlers": ["console"], "level": "WARNING"}}}

TAGGER_WEBHOOK = {webhook!r}


def HELPDESK_GET_NEW_TICKET_WEBHOOK_URLS():
    return [TAGGER_WEBHOOK]


def HELPDESK_GET_FOLLOWUP_WEBHOOK_URLS():
    return [TAGGER_WEBHOOK]
'''

URLS_PY = '''
from django.urls import include, path

urlpatterns = [path("", include("helpdesk.urls", namespace="helpdesk"))]
'''

MANAGE_PY = '''
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dh_settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
'''

# migrate, then what an admin does once in the Django admin (docs/helpdesks.md): a staff account for the
# tagger, a queue, and the custom fields (ours, plus one of the helpdesk's own that must stay untouched).
SETUP_PY = '''
import os

import django
from django.core.management import call_command

django.setup()
call_command("migrate", interactive=False, verbosity=0)

from django.contrib.auth import get_user_model
from helpdesk.models import CustomField, Queue

get_user_model().objects.create_superuser(os.environ["DH_USER"], "tagger@example.test", os.environ["DH_PASSWORD"])
Queue.objects.create(title="Support", slug="support")
CustomField.objects.create(name="mot_stage", label="MOT stage", data_type="list", staff_only=True,
                           empty_selection_list=True, list_values="lzmot\\nzmot\\nfmot\\nsmot\\numot")
CustomField.objects.create(name="mot_sentiment", label="MOT sentiment", data_type="list", staff_only=True,
                           empty_selection_list=True, list_values="positive\\nneutral\\nnegative")
CustomField.objects.create(name="mot_review", label="MOT review", data_type="boolean", staff_only=True)
CustomField.objects.create(name="order_number", label="Order number", data_type="varchar", max_length=40)
'''

# a customer's e-mail reply, through django-helpdesk's own mail pipeline (what its mailbox poller calls)
EMAIL_REPLY_PY = '''
import logging
import os

import django

django.setup()
from helpdesk.email import extract_email_metadata
from helpdesk.models import Queue

message = (
    "From: Janis Berzins <janis@example.lv>\\n"
    "To: support@example.test\\n"
    f"Subject: Re: [support-{os.environ['DH_TICKET']}] {os.environ['DH_TITLE']}\\n"
    f"Message-ID: <reply-{os.environ['DH_TICKET']}@example.lv>\\n"
    "MIME-Version: 1.0\\n"
    'Content-Type: text/plain; charset="utf-8"\\n'
    "\\n"
    f"{os.environ['DH_BODY']}\\n"
)
extract_email_metadata(message, Queue.objects.get(slug="support"), logging.getLogger("e2e"))
'''


# -- recording the webhook traffic at the service's door ------------------------------------------------------
class Deliveries:
    """ASGI wrapper around the tagger app: records every webhook delivery and the service's answer."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.items: list[dict[str, Any]] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/webhooks/"):
            return await self.app(scope, receive, send)
        body: list[bytes] = []
        answer: list[bytes] = []
        status = [0]

        async def recording_receive():
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
            return message

        async def recording_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body":
                answer.append(message.get("body", b""))
            await send(message)

        await self.app(scope, recording_receive, recording_send)
        with self.lock:
            self.items.append({"path": scope["path"], "query": scope["query_string"].decode(),
                               "payload": _json(b"".join(body)), "status": status[0],
                               "answer": _json(b"".join(answer))})

    def for_ticket(self, ticket_id: int) -> list[dict[str, Any]]:
        with self.lock:
            return [d for d in self.items
                    if isinstance(d["payload"], dict) and (d["payload"].get("ticket") or {}).get("id") == ticket_id]


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


# -- the two servers ------------------------------------------------------------------------------------------
@dataclass
class Stack:
    helpdesk_url: str
    api: httpx.Client                   # django-helpdesk's REST API, as the staff user
    helpdesk_log: Path
    tagger: LiveServer
    deliveries: Deliveries
    env: dict[str, str]
    project: Path

    @property
    def service(self):
        return self.tagger.app.app.state.service

    def create_ticket(self, **fields: Any) -> dict[str, Any]:
        body = {"queue": 1, "title": TITLE, "description": COMPLAINT, "submitter_email": "janis@example.lv",
                "priority": 3, "custom_order_number": "A-4411", **fields}
        response = self.api.post("/api/tickets/", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def ticket(self, ticket_id: int) -> dict[str, Any]:
        response = self.api.get(f"/api/tickets/{ticket_id}/")
        assert response.status_code == 200, response.text
        return response.json()

    def labelled(self, ticket_id: int) -> dict[str, Any]:
        """The ticket, once our stage and sentiment are on it (bounded wait)."""
        # both fields: django-helpdesk saves custom field values one by one, so a read can fall between them
        return wait_until(lambda: (t := self.ticket(ticket_id))["custom_mot_stage"] and t["custom_mot_sentiment"] and t,
                          timeout=WAIT_S,
                          interval=0.1, what=f"labels on django-helpdesk ticket {ticket_id}")

    def patches(self, ticket_id: int) -> int:
        """PATCH requests on the ticket that django-helpdesk answered 200, from its own request log."""
        log = self.helpdesk_log.read_text(encoding="utf-8", errors="replace")
        return len(re.findall(rf'"PATCH /api/tickets/{ticket_id}/ HTTP/1\.1" 200', log))

    def outbox(self, ticket_id: int) -> list[dict[str, Any]]:
        with self.service.store.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT status, add_tags FROM outbox WHERE helpdesk = :h AND ticket_id = :t "
                                        "ORDER BY id"), {"h": HELPDESK, "t": str(ticket_id)})
            return [dict(r._mapping) for r in rows]

    def corrections(self, ticket_id: int) -> list[dict[str, Any]]:
        with self.service.store.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT old_stage, old_sentiment, new_stage, new_sentiment FROM corrections "
                                        "WHERE helpdesk = :h AND ticket_id = :t ORDER BY id"),
                                {"h": HELPDESK, "t": str(ticket_id)})
            return [dict(r._mapping) for r in rows]

    def settled(self, ticket_id: int) -> None:
        """Every outbox row of the ticket written (none pending or retrying)."""
        wait_until(lambda: (rows := self.outbox(ticket_id)) and all(r["status"] == "done" for r in rows),
                   timeout=WAIT_S, interval=0.05, what=f"the outbox of ticket {ticket_id} to be written")

    def run(self, script: str, timeout: float = 60.0, **env: str) -> subprocess.CompletedProcess:
        path = self.project / "run_script.py"
        path.write_text(script, encoding="utf-8")
        return subprocess.run([sys.executable, str(path)], cwd=self.project, env={**self.env, **env},
                              capture_output=True, text=True, timeout=timeout)


def _versions() -> dict[str, str]:
    missing = [m for m in ("django", "rest_framework", "helpdesk") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"django-helpdesk is not installed (no module {', '.join(missing)}); it is in the dev extra: "
                    f".venv/bin/pip install -e '.[dev]'")
    return {name: importlib.metadata.version(name) for name in ("django-helpdesk", "Django", "djangorestframework")}


def _tail(text: str, n: int = 1500) -> str:
    return text[-n:].strip()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    versions = _versions()
    project = tmp_path_factory.mktemp("djangohelpdesk")
    user, password, token = "tagger", secrets.token_urlsafe(16), secrets.token_urlsafe(24)
    port = free_port()
    helpdesk_url = f"http://127.0.0.1:{port}"

    # our service, configured by environment like `tagger serve`, with the shipped model of models/
    settings = Settings(db_url=f"sqlite:///{project / 'tagger.db'}", worker_poll_s=0.05, outbox_base_delay_s=0.2,
                        outbox_max_delay_s=1.0, http_timeout_s=5.0)
    worker_client = local_client(5.0)           # the worker's HTTP client: no proxy variables, 127.0.0.1 only
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAGGER_DJANGOHELPDESK_URL", helpdesk_url)
        mp.setenv("TAGGER_DJANGOHELPDESK_USER", user)
        mp.setenv("TAGGER_DJANGOHELPDESK_PASSWORD", password)
        mp.setenv("TAGGER_DJANGOHELPDESK_TOKEN", token)
        app = create_app(settings, dashboard=False, worker_options={"client": worker_client})
    assert HELPDESK in app.state.service.adapters, app.state.service.adapter_errors
    deliveries = Deliveries(app)
    tagger = LiveServer(deliveries).__enter__()

    def stop_tagger() -> None:
        tagger.__exit__(None, None, None)
        worker_client.close()

    # django-helpdesk: a minimal project whose webhooks point at our service
    webhook = f"{tagger.url}/webhooks/{HELPDESK}?token={token}"
    (project / "dh_settings.py").write_text(SETTINGS_PY.replace("{webhook!r}", repr(webhook)), encoding="utf-8")
    (project / "dh_urls.py").write_text(URLS_PY, encoding="utf-8")
    (project / "manage.py").write_text(MANAGE_PY, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS and not k.startswith(("HELPDESK_", "TAGGER_"))}
    env.update(DJANGO_SETTINGS_MODULE="dh_settings", PYTHONPATH=str(project), PYTHONUNBUFFERED="1",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", DH_USER=user, DH_PASSWORD=password)
    (project / "setup_helpdesk.py").write_text(textwrap.dedent(SETUP_PY), encoding="utf-8")
    setup = subprocess.run([sys.executable, "setup_helpdesk.py"], cwd=project, env=env, capture_output=True,
                           text=True, timeout=120)
    if setup.returncode != 0:
        stop_tagger()
        pytest.skip(f"django-helpdesk {versions['django-helpdesk']} could not be set up here (migrate / admin "
                    f"objects failed, exit {setup.returncode}): {_tail(setup.stderr)}")
    log_path = project / "runserver.log"
    log = log_path.open("w", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                            cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
    api = local_client(10.0, base_url=helpdesk_url, auth=(user, password))

    def up() -> bool:
        if proc.poll() is not None:
            return True
        try:
            return api.get("/api/tickets/").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, timeout=30, interval=0.1, what="django-helpdesk's runserver")
        started = proc.poll() is None
    except AssertionError:
        started = False
    if not started:
        proc.kill()
        proc.wait(10)
        log.close()
        api.close()
        stop_tagger()
        pytest.skip(f"django-helpdesk {versions['django-helpdesk']} did not start here (`manage.py runserver "
                    f"127.0.0.1:{port}`): {_tail(log_path.read_text(encoding='utf-8', errors='replace'))}")
    try:
        yield Stack(helpdesk_url=helpdesk_url, api=api, helpdesk_log=log_path, tagger=tagger,
                    deliveries=deliveries, env=env, project=project)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        api.close()
        stop_tagger()


def expected_for(model, title: str, text: str):
    """What the model says for a message, read the way the service reads it (subject + text, channel ticket)."""
    return model.predict(f"{title}\n{text}".strip(), channel="ticket")


# -- the tests ------------------------------------------------------------------------------------------------

def test_new_ticket_gets_the_models_labels_and_nothing_else_changes(stack, shipped_model):
    created = stack.create_ticket()
    ticket_id = created["id"]
    assert created["custom_mot_stage"] in ("", None) and created["custom_order_number"] == "A-4411"

    ticket = stack.labelled(ticket_id)
    expected = expected_for(shipped_model, TITLE, COMPLAINT)
    assert (ticket["custom_mot_stage"], ticket["custom_mot_sentiment"], ticket["custom_mot_review"]) == (
        expected.stage, expected.sentiment, expected.review)
    # every other field, the helpdesk's own custom field and the follow-ups included, is as it was created
    assert {k: v for k, v in ticket.items() if k not in OURS} == {k: v for k, v in created.items() if k not in OURS}

    [delivery] = stack.deliveries.for_ticket(ticket_id)
    assert delivery["status"] == 202 and delivery["answer"]["status"] == "tagged"
    assert (delivery["answer"]["stage"], delivery["answer"]["sentiment"]) == (expected.stage, expected.sentiment)
    assert delivery["payload"]["queue_slug"] == "support" and "followup_id" not in delivery["payload"]
    [row] = stack.service.store.list_messages(ticket_id=str(ticket_id))
    assert (row["stage"], row["sentiment"], row["lang"]) == (expected.stage, expected.sentiment, expected.lang)
    assert row["ticket_url"] == f"{stack.helpdesk_url}/tickets/{ticket_id}/"


def test_our_write_is_made_once_and_triggers_no_webhook(stack):
    ticket_id = stack.create_ticket()["id"]
    stack.labelled(ticket_id)
    stack.settled(ticket_id)
    time.sleep(1.0)                     # room for a second delivery or write to (wrongly) happen
    assert len(stack.deliveries.for_ticket(ticket_id)) == 1      # django-helpdesk sends nothing on our PATCH
    assert stack.patches(ticket_id) == 1 and len(stack.outbox(ticket_id)) == 1

    # an agent answers: django-helpdesk sends the follow-up webhook; the customer's text is unchanged
    response = stack.api.post("/api/followups/", json={"ticket": ticket_id, "comment": "Mēs to pārbaudām.",
                                                       "public": True})
    assert response.status_code == 201, response.text
    deliveries = wait_until(lambda: (d := stack.deliveries.for_ticket(ticket_id)) and len(d) == 2 and d,
                            timeout=WAIT_S, what="the follow-up webhook")
    assert deliveries[1]["payload"]["followup_id"] == response.json()["id"]
    assert deliveries[1]["status"] == 200 and deliveries[1]["answer"]["status"] == "unchanged"
    time.sleep(0.5)
    assert stack.patches(ticket_id) == 1 and len(stack.outbox(ticket_id)) == 1


def test_an_agents_new_stage_is_recorded_as_a_correction_and_kept(stack):
    ticket_id = stack.create_ticket()["id"]
    labelled = stack.labelled(ticket_id)
    stack.settled(ticket_id)
    ours = (labelled["custom_mot_stage"], labelled["custom_mot_sentiment"])
    other = "fmot" if ours[0] != "fmot" else "zmot"
    # the agent picks another stage, then writes a follow-up (which sends the webhook)
    assert stack.api.patch(f"/api/tickets/{ticket_id}/", json={"custom_mot_stage": other}).status_code == 200
    assert stack.api.post("/api/followups/", json={"ticket": ticket_id, "comment": "Stage fixed by hand.",
                                                   "public": False}).status_code == 201
    deliveries = wait_until(lambda: (d := stack.deliveries.for_ticket(ticket_id)) and len(d) == 2 and d,
                            timeout=WAIT_S, what="the follow-up webhook")
    assert deliveries[1]["answer"]["status"] == "correction", deliveries[1]["answer"]
    assert stack.corrections(ticket_id) == [{"old_stage": ours[0], "old_sentiment": ours[1], "new_stage": other,
                                             "new_sentiment": ours[1]}]
    time.sleep(0.5)
    assert stack.ticket(ticket_id)["custom_mot_stage"] == other          # not overwritten by us
    assert stack.patches(ticket_id) == 2 and len(stack.outbox(ticket_id)) == 1   # ours and the agent's


def test_a_customers_email_reply_is_classified_and_written(stack, shipped_model):
    ticket_id = stack.create_ticket()["id"]
    first = stack.labelled(ticket_id)
    stack.settled(ticket_id)

    done = stack.run(textwrap.dedent(EMAIL_REPLY_PY), DH_TICKET=str(ticket_id), DH_TITLE=TITLE, DH_BODY=THANKS)
    assert done.returncode == 0, done.stderr
    deliveries = wait_until(lambda: (d := stack.deliveries.for_ticket(ticket_id)) and len(d) == 2 and d,
                            timeout=WAIT_S, what="the follow-up webhook of the e-mail reply")
    reply = deliveries[1]["payload"]["ticket"]["followup_set"][-1]
    assert reply["user"] is None and reply["title"].startswith("E-Mail Received")
    assert deliveries[1]["answer"]["status"] == "tagged", deliveries[1]["answer"]
    wait_until(lambda: len(stack.outbox(ticket_id)) == 2, timeout=WAIT_S, what="a second outbox row")
    stack.settled(ticket_id)

    expected = expected_for(shipped_model, TITLE, reply["comment"])
    ticket = stack.ticket(ticket_id)
    assert (ticket["custom_mot_stage"], ticket["custom_mot_sentiment"], ticket["custom_mot_review"]) == (
        expected.stage, expected.sentiment, expected.review)
    assert (expected.stage, expected.sentiment) != (first["custom_mot_stage"], first["custom_mot_sentiment"])
    assert ticket["custom_order_number"] == "A-4411" and ticket["description"] == COMPLAINT


# tickets that were there before the tagger: created straight in django-helpdesk's database (as an import or
# an old installation would have them), so no webhook ever announced them
HISTORY_PY = '''
import json
import os

import django

django.setup()
from helpdesk.models import FollowUp, Queue, Ticket

queue = Queue.objects.get(slug="support")
ids = []
for title, text in json.loads(os.environ["DH_HISTORY"]):
    ticket = Ticket.objects.create(queue=queue, title=title, description=text, submitter_email="old@example.lv")
    FollowUp.objects.create(ticket=ticket, title="Ticket Opened", comment=text, public=True)
    ids.append(ticket.id)
print(json.dumps(ids))
'''

HISTORY = [("Vai piegādājat uz Liepāju?", "Sveiki! Vai jūs piegādājat dīvānus arī uz Liepāju, un cik tas maksā?"),
           ("Broken zipper", "The zipper on the backpack I bought last month broke on the second trip. Not happy."),
           ("Grazie!", "Il frullatore è arrivato ieri ed è perfetto, grazie mille per la velocità!")]


def test_backfill_pages_through_the_real_api_and_writes_back_only_unlabelled_tickets(stack, shipped_model, tmp_path):
    from click.testing import CliRunner

    from tagger.cli import cli

    live = stack.create_ticket()["id"]                     # announced by a webhook: the service labels it
    stack.labelled(live)
    stack.settled(live)
    made = stack.run(textwrap.dedent(HISTORY_PY), DH_HISTORY=json.dumps(HISTORY))
    assert made.returncode == 0, made.stderr
    old_ids = json.loads(made.stdout.strip().splitlines()[-1])
    time.sleep(0.5)
    assert all(not stack.deliveries.for_ticket(i) for i in old_ids)       # no webhook for the history

    out = tmp_path / "history.jsonl"
    env = {"TAGGER_DJANGOHELPDESK_URL": stack.helpdesk_url, "TAGGER_DJANGOHELPDESK_USER": stack.env["DH_USER"],
           "TAGGER_DJANGOHELPDESK_PASSWORD": stack.env["DH_PASSWORD"], "NO_PROXY": "127.0.0.1",
           **{k: "" for k in PROXY_VARS}}
    result = CliRunner().invoke(cli, ["backfill", "--helpdesk", HELPDESK, "-o", str(out), "--write-back",
                                      "--db", str(stack.service.store.engine.url)], env=env)
    assert result.exit_code == 0, result.output
    rows = {int(r["ticket_id"]): r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert set(old_ids) | {live} <= set(rows)
    patches_before = stack.patches(live)
    for ticket_id, (title, text) in zip(old_ids, HISTORY, strict=True):
        expected = expected_for(shipped_model, title, text)
        assert (rows[ticket_id]["stage"], rows[ticket_id]["sentiment"]) == (expected.stage, expected.sentiment)
        ticket = stack.labelled(ticket_id)             # written back by the running service's worker
        assert (ticket["custom_mot_stage"], ticket["custom_mot_sentiment"]) == (expected.stage, expected.sentiment)
        stack.settled(ticket_id)
    time.sleep(0.5)
    assert stack.patches(live) == patches_before and len(stack.outbox(live)) == 1   # labelled before: untouched
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert counts["queued"] == len(old_ids) and counts["kept"] == len(rows) - len(old_ids)
