"""Model files: saved with metadata and SHA-256, loaded only when the hash matches; activation history."""
import json

import pytest

from tagger.errors import IntegrityError, ModelError
from tagger.registry import META_FILE, MODEL_FILE, Registry, load_tagger


def _save(registry, model, f1_stage=0.9, f1_sent=0.9):
    return registry.save(model, {"data_hash": "ab" * 32, "test_hash": "cd" * 32, "metrics": {
        "stage": {"macro_f1": f1_stage}, "sentiment": {"macro_f1": f1_sent}}})


def test_save_load_roundtrip_predicts_the_same(tmp_path, small_model):
    registry = Registry(tmp_path)
    version = _save(registry, small_model)
    meta = json.loads((tmp_path / version / META_FILE).read_text())
    assert {"version", "created", "sha256", "libraries", "data_hash", "metrics"} <= set(meta)
    assert meta["libraries"]["scikit-learn"]
    loaded = load_tagger(tmp_path / "current")
    text = "Mans pasūtījums vēl nav atnācis"
    assert loaded.predict(text).to_dict() == small_model.predict(text).to_dict()
    assert loaded.metadata["version"] == version


def test_tampered_model_file_is_refused_before_unpickling(tmp_path, small_model):
    registry = Registry(tmp_path)
    version = _save(registry, small_model)
    file = tmp_path / version / MODEL_FILE
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="SHA-256"):
        registry.load(version)


def test_activate_rollback_and_the_drop_guard(tmp_path, small_model):
    registry = Registry(tmp_path)
    good = _save(registry, small_model, 0.90, 0.90)
    registry.activate(good)
    worse = _save(registry, small_model, 0.80, 0.90)
    with pytest.raises(ModelError, match="stage macro-F1 -0.100"):
        registry.activate(worse, max_drop=0.02)
    assert registry.current() == good
    registry.activate(worse, max_drop=0.02, force=True)
    assert registry.current() == worse
    assert registry.rollback() == good
    assert registry.current() == good
    with pytest.raises(ModelError, match="nothing to roll back"):
        registry.rollback()


def test_missing_model_says_what_to_do(tmp_path):
    with pytest.raises(ModelError, match="tagger train"):
        Registry(tmp_path).current()
    with pytest.raises(ModelError, match="no model version"):
        Registry(tmp_path).load("v-nope")


def test_activation_guard_measures_both_models_on_the_same_messages(tmp_path, small_model, corpus):
    """Stored metrics from different held-out sets are not comparable: the guard re-evaluates."""
    registry = Registry(tmp_path)
    first = registry.save(small_model, {"test_hash": "one", "metrics": {"stage": {"macro_f1": 0.99}}})
    registry.activate(first)
    second = registry.save(small_model, {"test_hash": "two", "metrics": {"stage": {"macro_f1": 0.10}}})
    with pytest.raises(ModelError, match="different held-out sets"):
        registry.activate(second, max_drop=0.02)
    # the same model evaluated on the same messages has not dropped at all, whatever the stored figures say
    assert registry.activate(second, max_drop=0.02, heldout=corpus[1][:80]) == second
