"""Model files in `models/`: each version is a folder with `model.joblib` and `metadata.json`.

joblib files are pickles, and unpickling runs code, so a model is loaded only when the SHA-256 of its
file matches the one recorded in its metadata at save time. `models/ACTIVE.json` names the active
version and keeps the activation history, which `rollback` walks back.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import joblib

from tagger.errors import IntegrityError, ModelError

MODEL_FILE = "model.joblib"
META_FILE = "metadata.json"
ACTIVE_FILE = "ACTIVE.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    import numpy
    import scipy
    import sklearn

    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
            "numpy": numpy.__version__, "scipy": scipy.__version__, "joblib": joblib.__version__}


def _write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp files are owner-only; the service may run as another user
    os.replace(tmp, path)


class Registry:
    """The model versions in one folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- versions --------------------------------------------------------------------------------------
    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / META_FILE).is_file())

    def metadata(self, version: str) -> dict[str, Any]:
        path = self.root / version / META_FILE
        if not path.is_file():
            raise ModelError(f"no model version {version!r} in {self.root} (have: {', '.join(self.versions()) or 'none'})")
        return json.loads(path.read_text(encoding="utf-8"))

    def save(self, tagger, metadata: dict[str, Any]) -> str:
        """Write a new version (never overwriting one) and return its name."""
        now = dt.datetime.now(dt.UTC)
        data_hash = str(metadata.get("data_hash", ""))[:8] or "nodata"
        version = f"v{now:%Y%m%d-%H%M%S}-{data_hash}"
        folder = self.root / version
        suffix = 1
        while folder.exists():
            suffix += 1
            folder = self.root / f"{version}-{suffix}"
        version = folder.name
        tmp = Path(tempfile.mkdtemp(dir=self.root if self.root.is_dir() else None, prefix=".saving-"))
        try:
            joblib.dump(tagger, tmp / MODEL_FILE, compress=("xz", 3))
            meta = {
                "version": version,
                "created": now.isoformat(timespec="seconds"),
                **metadata,
                "libraries": library_versions(),
                "file": MODEL_FILE,
                "sha256": sha256_file(tmp / MODEL_FILE),
                "size_bytes": (tmp / MODEL_FILE).stat().st_size,
            }
            _write_json_atomic(tmp / META_FILE, meta)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the service may run as another user
            os.chmod(tmp / META_FILE, 0o644)
            self.root.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return version

    # -- activation ------------------------------------------------------------------------------------
    def _active_state(self) -> dict[str, Any]:
        path = self.root / ACTIVE_FILE
        if not path.is_file():
            return {"current": None, "history": []}
        return json.loads(path.read_text(encoding="utf-8"))

    def current(self) -> str:
        state = self._active_state()
        if state.get("current"):
            return state["current"]
        versions = self.versions()
        if not versions:
            raise ModelError(f"no trained model in {self.root}: run `tagger train` first")
        return versions[-1]

    def activate(self, version: str, *, force: bool = False, max_drop: float | None = None,
                 heldout: list | None = None) -> str:
        """Make `version` the active model. Refuses one whose macro-F1 fell by more than `max_drop`
        against the current one (either task), unless `force`. Both are measured on the same messages:
        `heldout` when given (both models are evaluated on it), else the metrics stored at training,
        which are only compared when they come from the same held-out set (same `test_hash`)."""
        new_meta = self.metadata(version)
        state = self._active_state()
        previous = state.get("current")
        if previous and previous != version and max_drop is not None and not force:
            old_meta = self.metadata(previous)
            if heldout:
                from tagger.evaluate import evaluate

                old_meta = {"metrics": evaluate(self.load(previous), heldout)}
                new_meta = {"metrics": evaluate(self.load(version), heldout)}
            elif old_meta.get("test_hash") != new_meta.get("test_hash"):
                raise ModelError(f"{previous} and {version} were measured on different held-out sets; "
                                 "pass the held-out messages to compare them (the CLI does), or use --force")
            drops = metric_drops(old_meta, new_meta)
            worst = {task: d for task, d in drops.items() if d > max_drop}
            if worst:
                detail = ", ".join(f"{t} macro-F1 -{d:.3f}" for t, d in worst.items())
                raise ModelError(f"refusing to activate {version}: {detail} against {previous} "
                                 f"(allowed drop {max_drop}); use --force to activate anyway")
        if previous and previous != version:
            state["history"] = [*state.get("history", []), previous][-50:]
        state["current"] = version
        state["activated"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.root.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(self.root / ACTIVE_FILE, state)
        return version

    def rollback(self) -> str:
        """Go back to the version that was active before the current one."""
        state = self._active_state()
        history = [v for v in state.get("history", []) if (self.root / v / META_FILE).is_file()]
        if not history:
            raise ModelError("nothing to roll back to: no earlier activated version")
        target = history.pop()
        state.update(current=target, history=history,
                     activated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        _write_json_atomic(self.root / ACTIVE_FILE, state)
        return target

    # -- loading ---------------------------------------------------------------------------------------
    def load(self, version: str | None = None):
        """Load one version (default: the active one), after checking its SHA-256."""
        folder = self.root / (version or self.current())
        meta = self.metadata(folder.name)
        file = folder / meta.get("file", MODEL_FILE)
        if not file.is_file():
            raise ModelError(f"{file} is missing")
        actual = sha256_file(file)
        if actual != meta.get("sha256"):
            raise IntegrityError(f"{file}: SHA-256 {actual[:12]}... does not match metadata "
                                 f"{str(meta.get('sha256'))[:12]}...; refusing to load it")
        saved = meta.get("libraries", {}).get("scikit-learn", "")
        import sklearn

        if saved.split(".")[:2] != sklearn.__version__.split(".")[:2]:
            warnings.warn(f"model {meta['version']} was saved with scikit-learn {saved}, running "
                          f"{sklearn.__version__}; retrain if predictions look wrong", stacklevel=2)
        try:
            tagger = joblib.load(file)
        except Exception as exc:  # a verified file that still fails to unpickle: incompatible libraries
            raise ModelError(f"{file} could not be loaded ({exc}); retrain with `tagger train`") from exc
        from tagger.encoder import check_identity

        check_identity(getattr(tagger, "encoder_identity", None))  # refuse a model of another encoder
        tagger.metadata = meta
        return tagger


def metric_drops(old: dict[str, Any], new: dict[str, Any]) -> dict[str, float]:
    """How much macro-F1 each task lost from `old` to `new` (negative = improved)."""
    drops = {}
    for task in ("stage", "sentiment"):
        o = old.get("metrics", {}).get(task, {}).get("macro_f1")
        n = new.get("metrics", {}).get(task, {}).get("macro_f1")
        if o is not None and n is not None:
            drops[task] = round(o - n, 4)
    return drops


def split_path(path: str | Path) -> tuple[Registry, str | None]:
    """`models/current`, `models`, `models/<version>` or a version name under the default folder ->
    (registry, version or None for the active one)."""
    p = Path(path)
    if p.name == "current":
        return Registry(p.parent), None
    if (p / META_FILE).is_file():
        return Registry(p.parent), p.name
    if p.is_dir():
        return Registry(p), None
    raise ModelError(f"no model at {path}: expected a models folder, a version folder or <folder>/current")


def load_tagger(path: str | Path = "models/current", **settings):
    """Load a verified model; `settings` (review_threshold, stage_prefix, sentiment_prefix) override."""
    registry, version = split_path(path)
    tagger = registry.load(version)
    for key, value in settings.items():
        if value is not None:
            setattr(tagger, key, value)
    return tagger
