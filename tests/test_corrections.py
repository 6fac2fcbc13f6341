"""Agents' corrections (issue 11.1), end to end on the generic adapter: a real `tagger` app on 127.0.0.1, the
helpdesk stand-in applying our writes, signed deliveries as docs/helpdesks.md (generic) specifies. The round trip:
first message tagged and written; the agent replaces our stage tag; the customer writes again with the agent's
tags in the payload; the correction is exported and no later write removes the agent's tag."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import pytest
from click.testing import CliRunner

from tagger.cli import cli
from tagger.config import Settings
from tagger.helpdesks.generic import GenericAdapter
from tagger.service.app import create_app
from tests.standin import LiveServer, local_client, wait_until

SECRET = "generic-webhook-secret"
OWN = ("mot_", "sentiment_")


def _signed(body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    mac = hmac.new(SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Tagger-Timestamp": ts, "X-Tagger-Signature": f"sha256={mac}", "Content-Type": "application/json"}


@pytest.fixture
def live(tmp_path, helpdesk, shipped_model):
    adapter = GenericAdapter(writeback_url=f"{helpdesk.url}/tickets/{{ticket_id}}/tags", secret=SECRET)
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'corr.db'}", outbox_base_delay_s=0.05,
                        outbox_max_delay_s=0.2, http_timeout_s=1.0, worker_poll_s=0.02)
    app = create_app(settings, shipped_model, adapters={"generic": adapter},
                     worker_options={"client": local_client(1.0)})
    with LiveServer(app) as server:
        yield server, settings


def _deliver(server, ticket: str, text: str, tags: set[str]) -> dict:
    body = json.dumps({"ticket_id": ticket, "text": text, "tags": sorted(tags),
                       "event_id": uuid.uuid4().hex}).encode()
    with local_client(10.0) as client:
        answer = client.post(f"{server.url}/webhooks/generic", content=body, headers=_signed(body))
    assert answer.status_code in (200, 202), answer.text
    return answer.json()


def _stage_tags(tags: set[str]) -> set[str]:
    return {t for t in tags if t.startswith("mot_") and t != "mot_review"}


def test_an_agents_stage_correction_is_kept_and_exported(live, helpdesk, tmp_path):
    server, settings = live
    first = _deliver(server, "C1", "My parcel #4411 never arrived, where is it?", set())
    assert first["status"] == "tagged"
    wait_until(lambda: helpdesk.writes_for("C1"), timeout=10, what="our first write")
    wait_until(lambda: server.service.store.outbox_counts()["pending"] == 0, timeout=10, what="write settled")
    ours = f"mot_{first['stage']}"
    agent_stage = "mot_fmot" if ours != "mot_fmot" else "mot_zmot"
    # the agent replaces our stage tag in the helpdesk
    helpdesk.tags["C1"] = (helpdesk.tags["C1"] - {ours}) | {agent_stage, "vip"}

    second = _deliver(server, "C1", "Also, can I change the delivery address to my office? It is urgent, "
                                    "I am not at home this week.", set(helpdesk.tags["C1"]))
    assert second["status"] == "tagged" and second["correction"]["new"]["stage"] == agent_stage.removeprefix("mot_")
    assert second["agent_labels"] == {"stage": agent_stage.removeprefix("mot_")}
    assert not _stage_tags(set(second["tags"]))          # we write no stage of ours any more
    wait_until(lambda: len(helpdesk.writes_for("C1")) >= 2, timeout=10, what="our second write")
    last_write = helpdesk.writes_for("C1")[-1]
    assert agent_stage not in last_write["remove"] and not _stage_tags(set(last_write["add"]))
    assert agent_stage in helpdesk.tags["C1"] and "vip" in helpdesk.tags["C1"]

    # a third message, with the agent's tags again: still theirs, and the correction is not recorded twice
    third = _deliver(server, "C1", "Never mind, I found a neighbour who can take it. Thanks!", set(helpdesk.tags["C1"]))
    assert third["status"] == "tagged" and "correction" not in third
    wait_until(lambda: len(helpdesk.writes_for("C1")) >= 3, timeout=10, what="our third write")
    assert agent_stage in helpdesk.tags["C1"]
    assert _stage_tags(helpdesk.tags["C1"]) == {agent_stage}
    assert len(server.service.store.list_corrections(latest_only=False)) == 1

    out = tmp_path / "corrections.jsonl"
    result = CliRunner().invoke(cli, ["feedback", "export", "-o", str(out), "--db", settings.db_url])
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["stage"] == agent_stage.removeprefix("mot_")
    assert record["text"] == "My parcel #4411 never arrived, where is it?"   # the message the agent corrected


def test_a_ticket_still_showing_an_older_classification_is_not_a_correction(live, helpdesk):
    server, _settings = live
    first = _deliver(server, "C2", "Do you deliver to Riga?", set())
    wait_until(lambda: server.service.store.outbox_counts()["pending"] == 0, timeout=10, what="write settled")
    second = _deliver(server, "C2", "I ordered now and it still has not shipped, what is going on??",
                      set(helpdesk.tags["C2"]))
    wait_until(lambda: server.service.store.outbox_counts()["pending"] == 0, timeout=10, what="write settled")
    # a late delivery carrying the first classification's tags is a stale snapshot
    stale = {f"mot_{first['stage']}", f"sentiment_{first['sentiment']}"}
    late = _deliver(server, "C2", "I ordered now and it still has not shipped, what is going on??", stale)
    if {f"mot_{second['stage']}", f"sentiment_{second['sentiment']}"} != stale:
        assert late["status"] == "unchanged" and "stale" in late["reason"]
    assert not server.service.store.list_corrections()


def test_tags_are_read_from_the_api_when_the_payload_has_none(tmp_path, helpdesk, shipped_model):
    """Zammad's default payload carries no tags: the service asks the adapter (`read_tags`) before deciding,
    and only when there is a write of ours to compare with."""
    reads: list[str] = []

    class NoTagsInPayload(GenericAdapter):
        payload_has_tags = False

        def read_tags(self, client, ticket_id):
            reads.append(ticket_id)
            return tuple(helpdesk.tags[ticket_id])

    adapter = NoTagsInPayload(writeback_url=f"{helpdesk.url}/tickets/{{ticket_id}}/tags", secret=SECRET)
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'zt.db'}", outbox_base_delay_s=0.05, worker_poll_s=0.02)
    app = create_app(settings, shipped_model, adapters={"generic": adapter}, worker_options={"client": local_client(1.0)})
    with LiveServer(app) as server:
        first = _deliver(server, "Z1", "Hello, my new vacuum cleaner stopped working after two days.", set())
        assert reads == []                                  # nothing of ours to compare with yet
        wait_until(lambda: server.service.store.outbox_counts()["pending"] == 0, timeout=10, what="write settled")
        ours = f"sentiment_{first['sentiment']}"
        theirs = "sentiment_positive" if ours != "sentiment_positive" else "sentiment_neutral"
        helpdesk.tags["Z1"] = (helpdesk.tags["Z1"] - {ours}) | {theirs}
        second = _deliver(server, "Z1", "Update: the shop replaced it, all good now.", set())  # no tags sent
        assert reads == ["Z1"]
        assert second["correction"]["new"]["sentiment"] == theirs.removeprefix("sentiment_")
        assert second["agent_labels"] == {"sentiment": theirs.removeprefix("sentiment_")}
