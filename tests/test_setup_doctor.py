"""`tagger setup`, `tagger doctor` and the start-up check of the helpdesks (issue 11.7, 11.4), over the CLI
with real adapters: the generic one (whose set-up is by hand) and an adapter whose `prepare` refuses."""
from __future__ import annotations

import datetime as dt

from click.testing import CliRunner

from tagger.cli import cli
from tagger.errors import ConfigError
from tagger.helpdesks.generic import GenericAdapter
from tagger.service.store import Store

GENERIC = {"TAGGER_GENERIC_WRITEBACK_URL": "http://127.0.0.1:9/tickets/{ticket_id}/tags",
           "TAGGER_GENERIC_SECRET": "s"}


class RefusingAdapter(GenericAdapter):
    """Stands for Zammad with "new tags" disabled and no admin right to create them."""

    name = "refusing"

    def prepare(self, client):
        raise ConfigError("the tags mot_smot, ... do not exist and this API user may not create them: enable "
                          "'New tags' in Settings > System > Tags, or create them there")


def refusing(env):
    return RefusingAdapter(writeback_url="http://127.0.0.1:9/{ticket_id}", secret="s")


def test_setup_prints_what_to_do_by_hand_where_the_api_cannot(monkeypatch):
    for key, value in GENERIC.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["setup", "generic", "--url", "https://tagger.example.com"])
    assert result.exit_code == 0, result.output
    assert "manual" in result.output and "https://tagger.example.com/webhooks/generic" in result.output
    assert "step(s) to do by hand" in result.output


def test_setup_refuses_bad_input_with_the_reason(monkeypatch):
    runner = CliRunner()
    unknown = runner.invoke(cli, ["setup", "nodesk", "--url", "https://t.example.com"])
    assert unknown.exit_code != 0 and "known:" in unknown.output
    unconfigured = runner.invoke(cli, ["setup", "zammad", "--url", "https://t.example.com"],
                                 env={"TAGGER_ZAMMAD_URL": ""})
    assert unconfigured.exit_code != 0 and "TAGGER_ZAMMAD_URL" in unconfigured.output
    for key, value in GENERIC.items():
        monkeypatch.setenv(key, value)
    bad_url = runner.invoke(cli, ["setup", "generic", "--url", "javascript:alert(1)"])
    assert bad_url.exit_code != 0 and "not an http(s) URL" in bad_url.output


def test_doctor_reports_each_helpdesk_and_fails_on_dead_letters(tmp_path, monkeypatch):
    for key, value in GENERIC.items():
        monkeypatch.setenv(key, value)
    db = f"sqlite:///{tmp_path / 'doc.db'}"
    store = Store(db)
    rec = store.record_classification(helpdesk="generic", ticket_id="1", event_id="e1", text_hash="h",
                                      prediction={"stage": "smot", "sentiment": "negative", "stage_confidence": 0.9,
                                                  "sentiment_confidence": 0.9, "lang": "en", "review": False},
                                      channel="ticket", model_version="v", add=["mot_smot"], remove=[],
                                      now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    runner = CliRunner()
    healthy = runner.invoke(cli, ["doctor", "--db", db])
    assert healthy.exit_code == 0, healthy.output
    assert "last seen 2.0 h ago" in healthy.output and "pending 1, dead 0" in healthy.output
    assert "zendesk" in healthy.output and "not configured" in healthy.output
    [item] = store.claim(limit=1)
    assert item.id == rec.outbox_id
    store.mark_dead(item, "permanent error: HTTP 403")
    store.close()
    sick = runner.invoke(cli, ["doctor", "--db", db])
    assert sick.exit_code == 1 and "dead 1" in sick.output and "tagger outbox --status dead" in sick.output


def test_serve_refuses_to_start_when_a_helpdesk_cannot_show_our_tags(tmp_path):
    result = CliRunner().invoke(cli, ["serve", "--db", f"sqlite:///{tmp_path / 's.db'}", "--port", "9",
                                      "--adapter", "tests.test_setup_doctor:refusing"])
    assert result.exit_code != 0
    assert "refusing:" in result.output and "enable 'New tags'" in result.output


def test_doctor_shows_a_failing_check(monkeypatch, tmp_path):
    class Broken(GenericAdapter):
        def check(self, client):
            from tagger.errors import HelpdeskError

            raise HelpdeskError("GET /api/v1/users/me: HTTP 401 'invalid token'", status=401, permanent=True)

    monkeypatch.setattr("tagger.helpdesks.generic.GenericAdapter.check", Broken.check)
    for key, value in GENERIC.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["doctor", "--db", f"sqlite:///{tmp_path / 'd.db'}"])
    assert result.exit_code == 1 and "failed" in result.output and "HTTP 401" in result.output
