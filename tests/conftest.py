"""Shared fixtures: the real shipped model, the real corpus, and a helpdesk stand-in."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
DATA = ROOT / "training_data"


@pytest.fixture(scope="session")
def shipped_model():
    """The model committed in models/ (the one `make run` uses), loaded and SHA-256 verified."""
    from tagger.classifier.registry import load_tagger

    return load_tagger(MODELS / "current")


@pytest.fixture(scope="session")
def corpus():
    """(train, held-out) examples of training_data/."""
    from tagger.classifier.data import load_corpus

    return load_corpus(DATA)


@pytest.fixture(scope="session")
def small_model(tmp_path_factory, corpus):
    """A model trained here, in the test session, on three languages of the train split: for tests
    of the train/save/load cycle that must not depend on the shipped file."""
    from tagger.classifier.model import train

    train_set = [e for e in corpus[0] if e.lang in ("en", "lv", "zh") and e.stage is not None]
    return train(train_set, random_state=0)


@pytest.fixture
def helpdesk():
    """A helpdesk stand-in on 127.0.0.1 (tests/standin.py) that answers every tag write; down at the end."""
    from tests.standin import StandinHelpdesk

    h = StandinHelpdesk()
    yield h
    h.down()
