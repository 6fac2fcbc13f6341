"""Model files in `models/`: each version is a folder with `model.npz` + `model.json` (see
tagger.classifier.modelfile: numbers and JSON, no pickle, so loading a model never runs code from it) and
`metadata.json`, which records the SHA-256 of each file. `models/ACTIVE.json` names the active version
and keeps the activation history, which `rollback` walks back.

With `TAGGER_MODEL_KEY` set, every saved version's metadata carries an HMAC-SHA256 over its canonical
JSON (which holds the files' hashes), and loading or activating refuses a version without a valid one:
the hash catches corruption, the HMAC tampering. Versions saved by releases before 2026-12 are pickles
(`model.joblib`); they are refused, and `tagger models convert VERSION` rewrites one you trust.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.classifier import modelfile
from tagger.classifier.encoder import check_identity
from tagger.errors import IntegrityError, ModelError

if TYPE_CHECKING:
    from tagger.classifier.model import Tagger

LEGACY_FILE = "model.joblib"
META_FILE = "metadata.json"
ACTIVE_FILE = "ACTIVE.json"
KEY_ENV = "TAGGER_MODEL_KEY"
_VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


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
            "numpy": numpy.__version__, "scipy": scipy.__version__}


def _canonical(meta: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in meta.items() if k != "hmac"}, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")


def sign(meta: dict[str, Any], key: bytes) -> str:
    """The HMAC-SHA256 (hex) of a version's metadata, without its own `hmac` field."""
    return hmac.new(key, _canonical(meta), hashlib.sha256).hexdigest()


def _write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp files are owner-only; the service may run as another user
    os.replace(tmp, path)


class Registry:
    """The model versions in one folder."""

    def __init__(self, root: str | Path, key: bytes | str | None = None):
        """`key`: the HMAC key that signs and verifies versions (default: TAGGER_MODEL_KEY, unset = no signing)."""
        self.root = Path(root)
        key = os.environ.get(KEY_ENV) or None if key is None else key
        self.key = key.encode("utf-8") if isinstance(key, str) else key

    def folder(self, version: str) -> Path:
        """The folder of `version`, which must be a plain version name inside this registry."""
        if not isinstance(version, str) or not _VERSION_NAME.fullmatch(version) or version.startswith(".."):
            raise ModelError(f"{version!r} is not a model version name (a folder name inside {self.root}, "
                             f"such as {self.versions()[-1] if self.versions() else 'v20261203-102234-f94bc8c8'})")
        return self.root / version

    # -- versions --------------------------------------------------------------------------------------
    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / META_FILE).is_file())

    def metadata(self, version: str) -> dict[str, Any]:
        path = self.folder(version) / META_FILE
        if not path.is_file():
            raise ModelError(f"no model version {version!r} in {self.root} (have: {', '.join(self.versions()) or 'none'})")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise IntegrityError(f"{path}: unreadable metadata ({exc})") from exc
        if not isinstance(meta, dict):
            raise IntegrityError(f"{path}: metadata is not a JSON object")
        return meta

    def save(self, tagger: Tagger, metadata: dict[str, Any]) -> str:
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
            modelfile.dump(tagger, tmp)
            meta = {"version": version, "created": now.isoformat(timespec="seconds"), **metadata}
            self._write_metadata(tmp, meta)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the service may run as another user
            self.root.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return version

    def _write_metadata(self, folder: Path, meta: dict[str, Any]) -> None:
        """Record the files' hashes, format and libraries in `meta` (signed when a key is set) and write it."""
        for stale in ("file", "sha256", "size_bytes", "hmac"):
            meta.pop(stale, None)
        meta.update(libraries=library_versions(), format=modelfile.FORMAT,
                    files={name: sha256_file(folder / name) for name in modelfile.FILES},
                    size_bytes=sum((folder / name).stat().st_size for name in modelfile.FILES))
        if self.key:
            meta["hmac"] = sign(meta, self.key)
        for name in modelfile.FILES:
            os.chmod(folder / name, 0o644)
        _write_json_atomic(folder / META_FILE, meta)

    def verify(self, version: str) -> dict[str, Any]:
        """The metadata of `version` once its files are proven intact (and signed, with a key): the checks
        that come before anything is read from the model files. Raises IntegrityError or ModelError."""
        folder = self.folder(version)
        meta = self.metadata(version)
        if "files" not in meta and (folder / LEGACY_FILE).is_file():
            raise ModelError(f"{version} is stored as a pickle ({LEGACY_FILE}, the format before 2026-12), which can "
                             f"run code when loaded; if you trust it, convert it once with `tagger models convert "
                             f"{version}`, or retrain")
        if self.key:
            given = meta.get("hmac")
            if not isinstance(given, str) or not hmac.compare_digest(given, sign(meta, self.key)):
                raise IntegrityError(f"{version}: {'no' if not given else 'an invalid'} signature in {META_FILE} while "
                                     f"{KEY_ENV} is set; refusing it (sign trusted versions with `tagger models "
                                     "sign`)")
        files = meta.get("files")
        if not isinstance(files, dict) or set(files) != set(modelfile.FILES):
            raise IntegrityError(f"{folder / META_FILE}: lists files {sorted(files) if isinstance(files, dict) else files}, "
                                 f"expected {list(modelfile.FILES)}")
        for name, expected in files.items():
            path = folder / name
            if not path.is_file():
                raise ModelError(f"{path} is missing")
            actual = sha256_file(path)
            if actual != expected:
                raise IntegrityError(f"{path}: SHA-256 {actual[:12]}... does not match metadata "
                                     f"{str(expected)[:12]}...; refusing to load it")
        return meta

    def sign_version(self, version: str) -> None:
        """Add (or renew) the HMAC of a version already verified by its hashes; needs a key."""
        if not self.key:
            raise ModelError(f"set {KEY_ENV} to sign model versions")
        key, self.key = self.key, None
        try:
            meta = self.verify(version)
        finally:
            self.key = key
        meta["hmac"] = sign(meta, self.key)
        _write_json_atomic(self.folder(version) / META_FILE, meta)

    def convert(self, version: str) -> None:
        """Rewrite a pickled version (model.joblib) you trust into the code-free format, in place. The
        pickle's SHA-256 must still match its metadata; it is read once, here, and then removed."""
        import joblib

        folder = self.folder(version)
        meta = self.metadata(version)
        legacy = folder / meta.get("file", LEGACY_FILE)
        if "files" in meta or not legacy.is_file():
            raise ModelError(f"{version} is not in the pickled format; nothing to convert")
        actual = sha256_file(legacy)
        if actual != meta.get("sha256"):
            raise IntegrityError(f"{legacy}: SHA-256 {actual[:12]}... does not match metadata; not converting it")
        tagger = joblib.load(legacy)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".converting-"))
        try:
            modelfile.dump(tagger, tmp)
            self._write_metadata(tmp, dict(meta))
            for name in (*modelfile.FILES, META_FILE):
                os.replace(tmp / name, folder / name)
            legacy.unlink()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def summary(self) -> list[dict[str, Any]]:
        """One row per version (`tagger models list`): date, held-out macro-F1, sizes, data hash, active."""
        versions = self.versions()
        current = self.current() if versions else None
        rows = []
        for v in versions:
            meta = self.metadata(v)
            m = meta.get("metrics", {})
            rows.append({"version": v, "active": v == current, "created": meta.get("created"),
                         "stage_macro_f1": m.get("stage", {}).get("macro_f1"),
                         "sentiment_macro_f1": m.get("sentiment", {}).get("macro_f1"),
                         "n_train": meta.get("n_train"), "data_hash": meta.get("data_hash", "")[:12],
                         "size_bytes": meta.get("size_bytes")})
        return rows

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
                 measured: tuple[dict[str, Any], dict[str, Any]] | None = None) -> str:
        """Make `version` the active model. Refuses one whose macro-F1 fell by more than `max_drop` against
        the current one (either task), unless `force`. `measured` is (current's metrics, new one's metrics)
        taken on the same messages (`tagger.classifier.training.activate_version` evaluates both on the held-out
        split); without it the metrics stored at training are compared, and only when they come from the
        same held-out set (same `test_hash`).
        `force` skips the quality guard only: the version must be a folder of this registry whose files
        pass `verify` (hashes, signature) and load, or the next start of the service would fail."""
        new_meta = dict(self.load(version).metadata)
        state = self._active_state()
        previous = state.get("current")
        if previous and previous != version and max_drop is not None and not force:
            if measured is not None:
                old_meta, new_meta = {"metrics": measured[0]}, {"metrics": measured[1]}
            else:
                old_meta = self.metadata(previous)
                if old_meta.get("test_hash") != new_meta.get("test_hash"):
                    raise ModelError(f"{previous} and {version} were measured on different held-out sets; "
                                     "evaluate both on the same messages (the CLI does), or use --force")
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
        self.load(target)  # a version that no longer verifies is not rolled back to
        state.update(current=target, history=history,
                     activated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        _write_json_atomic(self.root / ACTIVE_FILE, state)
        return target

    # -- loading ---------------------------------------------------------------------------------------
    def load(self, version: str | None = None):
        """Load one version (default: the active one), after `verify` (hashes, signature)."""
        version = self.current() if version is None else version
        meta = self.verify(version)
        saved = meta.get("libraries", {}).get("scikit-learn", "")
        import sklearn

        if saved.split(".")[:2] != sklearn.__version__.split(".")[:2]:
            warnings.warn(f"model {version} was saved with scikit-learn {saved}, running "
                          f"{sklearn.__version__}; retrain if predictions look wrong", stacklevel=2)
        tagger = modelfile.load(self.folder(version))
        check_identity(tagger.encoder_identity)  # refuse a model of another encoder
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
