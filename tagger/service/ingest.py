"""The webhook rules in one place: what a customer message does to the store, whoever delivers it.

`ingest(store, tagger, message, settings, read_tags=...)` returns an `Outcome`; the webhook route (tagger.service.app)
only maps it to an HTTP status. In order:

1. **Duplicates.** An event id seen before is a `duplicate` (a helpdesk retrying a delivery): nothing happens.
2. **Corrections.** The ticket's current tags are compared with what we last wrote on it (once that write is
   done). A label of ours that someone else replaced (`mot_smot` -> `mot_fmot`) is a correction: recorded once,
   with the text of the message it corrects, and exported by `tagger feedback export`. From then on that label
   on that ticket is the agent's: later classifications never remove or replace it (they still write what the
   agent did not set, e.g. the sentiment, or the review tag). A ticket that still shows an earlier
   classification of ours (a stale snapshot) is not a correction.
3. **Unchanged text.** A delivery whose text is the one we classified last (for instance caused by our own tag
   write) is `unchanged`, or a `correction` when step 2 found one.
4. **Classification.** Anything else is classified and stored with its outbox row in one transaction (`tagged`);
   the worker writes the tags later.

The ticket's current tags are the webhook's own, or, for helpdesks whose payload has none
(`Adapter.payload_has_tags = False`), read from the helpdesk's API through `read_tags`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tagger.labels import CHANNELS, SENTIMENTS, STAGES, review_tag, sentiment_tag, stage_tag, tags_for
from tagger.service.store import DuplicateEvent, text_hash

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from tagger.classifier.model import Tagger
    from tagger.config import Settings
    from tagger.helpdesks.contract import Message
    from tagger.service.store import Store

TAGGED, DUPLICATE, UNCHANGED, CORRECTION = "tagged", "duplicate", "unchanged", "correction"


@dataclass(frozen=True)
class Outcome:
    """What one delivery did: `status` (tagged, duplicate, unchanged, correction) and the answer's body."""

    status: str
    body: dict[str, Any]
    classify_seconds: float | None = None
    correction: dict[str, Any] | None = field(default=None, repr=False)


def own_tags(settings: Settings) -> set[str]:
    """Every tag this tool manages under the configured prefixes."""
    return ({stage_tag(s, settings.stage_tag_prefix) for s in STAGES}
            | {sentiment_tag(s, settings.sentiment_tag_prefix) for s in SENTIMENTS}
            | {review_tag(settings.stage_tag_prefix)})


def _labels_on(tags: Iterable[str], settings: Settings) -> tuple[set[str], set[str]]:
    tags = set(tags)
    return ({s for s in STAGES if stage_tag(s, settings.stage_tag_prefix) in tags},
            {s for s in SENTIMENTS if sentiment_tag(s, settings.sentiment_tag_prefix) in tags})


def _replaced(written: str | None, present: set[str]) -> str | None:
    """The label someone put in place of ours: `present` holds exactly one label that is not `written`."""
    if written is None:
        return None            # we did not write this label (the agent owns it): nothing of ours to correct
    others = present - {written}
    return next(iter(others)) if len(others) == 1 else None


def agent_labels(store: Store, helpdesk: str, ticket_id: str) -> dict[str, str]:
    """The labels agents set on a ticket by correcting ours: {"stage": "fmot"} and/or {"sentiment": ...}."""
    owned: dict[str, str] = {}
    for c in store.ticket_corrections(helpdesk, ticket_id):
        if c["new_stage"] != c["old_stage"]:
            owned["stage"] = c["new_stage"]
        if c["new_sentiment"] != c["old_sentiment"]:
            owned["sentiment"] = c["new_sentiment"]
    return owned


def write_plan(stage: str, sentiment: str, review: bool, settings: Settings,
               owned: dict[str, str]) -> tuple[list[str], list[str]]:
    """(tags to add, tags to remove) for a classification, leaving the labels agents own untouched."""
    add = tags_for(stage, sentiment, review, stage_prefix=settings.stage_tag_prefix,
                   sentiment_prefix=settings.sentiment_tag_prefix)
    keep: set[str] = set()
    if "stage" in owned:
        keep |= {stage_tag(s, settings.stage_tag_prefix) for s in STAGES}
    if "sentiment" in owned:
        keep |= {sentiment_tag(s, settings.sentiment_tag_prefix) for s in SENTIMENTS}
    add = [t for t in add if t not in keep]
    remove = sorted(own_tags(settings) - set(add) - keep)
    return add, remove


def _detect_correction(store: Store, message: Message, last: dict[str, Any], tags: Iterable[str],
                       settings: Settings) -> tuple[str, str] | str | None:
    """(new stage, new sentiment) when the ticket's tags show an agent's correction of our last write; else
    None, or a reason why what differs is not a correction."""
    stages, sentiments = _labels_on(tags, settings)
    if last.get("write_status") != "done":
        if (stages and stages != {last["stage"]}) or (sentiments and sentiments != {last["sentiment"]}):
            return "our tags are not written yet, so the ticket's tags are not a correction"
        return None
    written_stage, written_sentiment = _labels_on(last.get("tags") or (), settings)
    new_stage = _replaced(next(iter(written_stage), None), stages)
    new_sentiment = _replaced(next(iter(written_sentiment), None), sentiments)
    if new_stage is None and new_sentiment is None:
        return None
    pair = (new_stage or last["stage"], new_sentiment or last["sentiment"])
    if pair in store.labels_written_before(message.helpdesk, message.ticket_id, last["id"]):
        return "the ticket still shows an earlier classification (stale event), not a correction"
    previous = store.last_correction(last["id"])
    if previous and (previous["new_stage"], previous["new_sentiment"]) == pair:
        return "this correction was recorded before"
    return pair


def ingest(store: Store, tagger: Tagger, message: Message, settings: Settings, *,
           read_tags: Callable[[], Iterable[str]] | None = None, on_queued: Callable[[], None] | None = None) -> Outcome:
    """Apply the rules above to one customer message. `read_tags`, for helpdesks whose payload carries no tags,
    reads the ticket's current tags from the API; it is called only when there is a write of ours to compare
    with. Raises StoreError when the database is unavailable."""
    if store.is_processed(message.helpdesk, message.event_id):
        return Outcome(DUPLICATE, {"status": DUPLICATE, "reason": f"event {message.event_id} was processed before"})
    text = message.full_text
    digest = text_hash(text)
    last = store.last_message(message.helpdesk, message.ticket_id)
    tags: tuple[str, ...] = tuple(message.tags)
    if read_tags is not None and last is not None and last.get("write_status") == "done":
        tags = tuple(read_tags())
    same_text = last is not None and last["text_hash"] == digest
    correction = None
    if last is not None:
        found = _detect_correction(store, message, last, tags, settings)
        if isinstance(found, tuple):
            # the correction is of the message we classified last: its text, not the new one (if any)
            corrected_text = text if same_text else (last.get("text") or "")
            event_id = message.event_id if same_text else f"{message.event_id}#correction"
            try:
                correction_id = store.record_correction(message=last, event_id=event_id, new_stage=found[0],
                                                        new_sentiment=found[1], text=corrected_text)
            except DuplicateEvent:
                return Outcome(DUPLICATE, {"status": DUPLICATE,
                                           "reason": f"event {message.event_id} was processed before"})
            correction = {"correction_id": correction_id, "message_id": last["id"],
                          "old": {"stage": last["stage"], "sentiment": last["sentiment"]},
                          "new": {"stage": found[0], "sentiment": found[1]}}
        if same_text:
            if correction is not None:
                return Outcome(CORRECTION, {"status": CORRECTION, **correction}, correction=correction)
            reason = found if isinstance(found, str) else (
                "text unchanged since it was classified (e.g. our own tag update); nothing to do")
            return _unchanged(store, message, last, reason)
    outcome = _classify(store, tagger, message, text, digest, settings)
    if outcome.status == TAGGED and on_queued is not None:
        on_queued()
    if correction is not None and outcome.status == TAGGED:
        outcome.body["correction"] = correction
        return Outcome(outcome.status, outcome.body, outcome.classify_seconds, correction)
    return outcome


def _unchanged(store: Store, message: Message, last: dict[str, Any], reason: str) -> Outcome:
    if not store.record_event(message.helpdesk, message.event_id, UNCHANGED):
        return Outcome(DUPLICATE, {"status": DUPLICATE, "reason": f"event {message.event_id} was processed before"})
    return Outcome(UNCHANGED, {"status": UNCHANGED, "reason": reason, "message_id": last["id"],
                               "stage": last["stage"], "sentiment": last["sentiment"]})


def _classify(store: Store, tagger: Tagger, message: Message, text: str, digest: str,
              settings: Settings) -> Outcome:
    channel = message.channel if message.channel in CHANNELS else "ticket"
    started = time.perf_counter()
    prediction = tagger.predict(text, channel=channel)
    seconds = time.perf_counter() - started
    labels = prediction.to_dict()
    if labels.get("lang") in (None, "", "und") and message.lang:
        labels["lang"] = message.lang
    owned = agent_labels(store, message.helpdesk, message.ticket_id)
    add, remove = write_plan(prediction.stage, prediction.sentiment, prediction.review, settings, owned)
    version = str(tagger.metadata.get("version", "unversioned"))
    try:
        recorded = store.record_classification(
            helpdesk=message.helpdesk, ticket_id=message.ticket_id, event_id=message.event_id, text_hash=digest,
            prediction=labels, channel=channel, model_version=version, add=add, remove=remove,
            ticket_url=message.url, text=text)
    except DuplicateEvent:  # a concurrent delivery of the same event won the race
        return Outcome(DUPLICATE, {"status": DUPLICATE, "reason": f"event {message.event_id} was processed before"})
    body = {"status": TAGGED, "message_id": recorded.message_id, "outbox_id": recorded.outbox_id,
            "ticket_id": message.ticket_id, "stage": prediction.stage,
            "stage_confidence": prediction.stage_confidence, "sentiment": prediction.sentiment,
            "sentiment_confidence": prediction.sentiment_confidence, "lang": labels["lang"],
            "confidence": prediction.confidence, "review": prediction.review,
            "review_reason": prediction.review_reason, "tags": add, "model_version": version}
    if owned:
        body["agent_labels"] = owned
    return Outcome(TAGGED, body, seconds)
