"""Model files: code-free (npz + JSON), saved with metadata and SHA-256 (and an HMAC with a key), loaded only
when they verify; activation history; activation never overrides the path or the hash."""
import hashlib
import json
import os

import joblib
import numpy as np
import pytest

from tagger.classifier import modelfile
from tagger.classifier.registry import LEGACY_FILE, META_FILE, Registry, load_tagger, sha256_file
from tagger.errors import IntegrityError, ModelError

MODEL_FILE = modelfile.ARRAYS_FILE


def _save(registry, model, f1_stage=0.9, f1_sent=0.9):
    return registry.save(model, {"data_hash": "ab" * 32, "test_hash": "cd" * 32, "metrics": {
        "stage": {"macro_f1": f1_stage}, "sentiment": {"macro_f1": f1_sent}}})


def test_save_load_roundtrip_predicts_the_same(tmp_path, small_model):
    registry = Registry(tmp_path)
    version = _save(registry, small_model)
    meta = json.loads((tmp_path / version / META_FILE).read_text())
    assert {"version", "created", "files", "format", "libraries", "data_hash", "metrics"} <= set(meta)
    assert set(meta["files"]) == {"model.npz", "model.json"} and "hmac" not in meta
    assert meta["libraries"]["scikit-learn"]
    loaded = load_tagger(tmp_path / "current")
    text = "Mans pasūtījums vēl nav atnācis"
    assert loaded.predict(text).to_dict() == small_model.predict(text).to_dict()
    assert loaded.metadata["version"] == version


def test_tampered_model_file_is_refused_before_reading(tmp_path, small_model):
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
    from tagger.classifier.training import activate_version

    assert activate_version(registry, second, max_drop=0.02, heldout=corpus[1][:80]) == second


def _rehash(folder, meta_patch=None):
    """What an attacker who can write the folder does: recompute the hashes in metadata.json."""
    meta = json.loads((folder / META_FILE).read_text())
    meta["files"] = {name: sha256_file(folder / name) for name in meta["files"]}
    meta.update(meta_patch or {})
    (folder / META_FILE).write_text(json.dumps(meta))


class _Payload:
    """Unpickling this runs code: it creates the file named by `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_model_files_carry_no_code(tmp_path, small_model):
    """A crafted array file with a matching hash cannot run code: object (pickled) arrays are refused."""
    registry = Registry(tmp_path / "models")
    version = _save(registry, small_model)
    folder = tmp_path / "models" / version
    marker = tmp_path / "pwned"
    with np.load(folder / MODEL_FILE) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["featurizer.char_idf"] = np.array([_Payload(marker)], dtype=object)
    np.savez(folder / MODEL_FILE, **arrays)
    _rehash(folder)
    with pytest.raises(ModelError, match="model.npz"):
        registry.load(version)
    assert not marker.exists()


def test_old_pickled_versions_are_refused_until_converted(tmp_path, small_model):
    root = tmp_path / "models"
    marker = tmp_path / "pwned"
    evil, good = root / "v20200101-000000-evil", root / "v20200101-000001-good"
    for folder, obj in ((evil, _Payload(marker)), (good, small_model)):
        folder.mkdir(parents=True)
        joblib.dump(obj, folder / LEGACY_FILE)
        (folder / META_FILE).write_text(json.dumps({"version": folder.name, "file": LEGACY_FILE,
                                                    "sha256": sha256_file(folder / LEGACY_FILE)}))
    registry = Registry(root)
    for folder in (evil, good):
        with pytest.raises(ModelError, match=f"tagger models convert {folder.name}"):
            registry.load(folder.name)
        with pytest.raises(ModelError, match="pickle"):
            registry.activate(folder.name, force=True)
    assert not marker.exists()  # nothing was unpickled
    registry.convert(good.name)  # the admin's explicit decision to trust this one
    assert not (good / LEGACY_FILE).exists() and (good / MODEL_FILE).is_file()
    text = "Mans pasūtījums vēl nav atnācis"
    assert registry.load(good.name).predict(text).to_dict() == small_model.predict(text).to_dict()


def test_with_a_key_only_signed_versions_load(tmp_path, small_model, monkeypatch):
    root = tmp_path / "models"
    unsigned = _save(Registry(root, key=""), small_model)
    monkeypatch.setenv("TAGGER_MODEL_KEY", "s3cret-model-key")
    registry = Registry(root)
    signed = _save(registry, small_model)
    meta = json.loads((root / signed / META_FILE).read_text())
    assert len(meta["hmac"]) == 64
    assert registry.load(signed).metadata["version"] == signed
    with pytest.raises(IntegrityError, match="no signature"):
        registry.load(unsigned)
    with pytest.raises(IntegrityError, match="no signature"):
        registry.activate(unsigned, force=True)
    # tampering with a file and recomputing its hash breaks the signature
    spec = json.loads((root / signed / "model.json").read_text())
    spec["review_threshold"] = 0.0
    (root / signed / "model.json").write_text(json.dumps(spec))
    _rehash(root / signed)
    with pytest.raises(IntegrityError, match="invalid signature"):
        registry.load(signed)
    # a signature made with another key is no signature
    other = Registry(root, key="another-key")
    with pytest.raises(IntegrityError, match="invalid signature"):
        other.load(_save(registry, small_model))
    registry.sign_version(unsigned)  # the admin vouches for an older version
    assert registry.load(unsigned).metadata["version"] == unsigned


@pytest.mark.parametrize("name", ["../elsewhere", "/tmp/elsewhere", "..", "a/b", ""])
def test_activate_refuses_a_folder_outside_the_registry_even_with_force(tmp_path, small_model, name):
    registry = Registry(tmp_path / "models")
    good = _save(registry, small_model)
    registry.activate(good)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(ModelError, match="not a model version name|no model version"):
        registry.activate(name, force=True)
    assert registry.current() == good


def test_activate_refuses_a_failed_hash_even_with_force(tmp_path, small_model):
    registry = Registry(tmp_path / "models")
    good = _save(registry, small_model)
    registry.activate(good)
    bad = _save(registry, small_model)
    with (tmp_path / "models" / bad / "model.json").open("a") as fh:
        fh.write(" ")
    with pytest.raises(IntegrityError, match="SHA-256"):
        registry.activate(bad, force=True)
    assert registry.current() == good


def test_inconsistent_model_files_are_a_clear_error(tmp_path, small_model):
    registry = Registry(tmp_path / "models")
    version = _save(registry, small_model)
    folder = tmp_path / "models" / version
    spec = json.loads((folder / "model.json").read_text())
    spec["featurizer"]["n_bits"] = 12
    (folder / "model.json").write_text(json.dumps(spec))
    _rehash(folder)
    with pytest.raises(ModelError, match="do not fit"):
        registry.load(version)
    assert hashlib.sha256((folder / "model.json").read_bytes()).hexdigest() == sha256_file(folder / "model.json")
    assert os.path.isfile(folder / META_FILE)
