"""Agents' tag corrections, from the store, as labelled training examples."""
from __future__ import annotations

from tagger.classifier.data import Example
from tagger.config import Settings


def feedback_examples(settings: Settings) -> list[Example]:
    """The latest correction of every corrected message, as training examples (source `feedback:<id>`,
    one batch, so they count as their own writing batch for the calibration folds)."""
    from tagger.service.store import Store

    store = Store(settings.db_url, create=False)
    try:
        return [Example(text=r["text"], stage=r["stage"], sentiment=r["sentiment"], channel=r["channel"] or "ticket",
                        lang=r["lang"] or "", source=f"feedback:{i}") for i, r in enumerate(store.feedback_examples(), 1)]
    finally:
        store.close()
