"""Settings: environment variables first, then one optional TOML file, then built-in defaults.

Every setting is documented in one table in the README. `TAGGER_CONFIG` names the TOML file
(default `tagger.toml` in the working directory, if present); its keys are the variable names
without the `TAGGER_` prefix, in lower case (e.g. `review_threshold = 0.6`).
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from tagger.errors import ConfigError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def _default_models_dir() -> str:
    return str(PACKAGE_ROOT / "models")


def _default_data_dir() -> str:
    return str(PACKAGE_ROOT / "training_data")


@dataclass(frozen=True)
class Settings:
    """All knobs of the tagger. Build with `Settings.load()`; tests pass overrides."""

    models_dir: str = field(default_factory=_default_models_dir)
    data_dir: str = field(default_factory=_default_data_dir)
    db_url: str = "sqlite:///tagger.db"
    review_threshold: float | None = None   # None: the model's own, chosen on held-out data at training
    fast_model: bool = False                 # n-grams only (no encoder) in serve, worker and backfill
    stage_tag_prefix: str = "mot_"
    sentiment_tag_prefix: str = "sentiment_"
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1_000_000
    signature_tolerance_s: int = 300
    outbox_max_age_s: int = 86_400
    outbox_base_delay_s: float = 2.0
    outbox_max_delay_s: float = 600.0
    http_timeout_s: float = 10.0
    worker_poll_s: float = 0.5
    worker_concurrency: int = 8
    api_token: str = ""
    metrics_token: str = ""                  # /metrics (else api_token; with neither, local clients only)
    trusted_proxies: str = ""                # reverse proxies whose X-Forwarded-For is believed (tagger.access)
    activation_max_drop: float = 0.02
    retention_days: int = 0                  # 0: keep messages forever; else `tagger prune` (and the worker) removes older ones
    prune_every_s: float = 3600.0

    @classmethod
    def load(cls, env: dict[str, str] | None = None, **overrides) -> Settings:
        """Read settings from the config file and `TAGGER_*` environment variables; overrides win."""
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        cfg_path = env.get("TAGGER_CONFIG", "tagger.toml")
        if Path(cfg_path).is_file():
            try:
                values.update(tomllib.loads(Path(cfg_path).read_text(encoding="utf-8")))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{cfg_path}: not valid TOML: {exc}") from exc
        elif "TAGGER_CONFIG" in env:
            raise ConfigError(f"TAGGER_CONFIG points to {cfg_path}, which does not exist")
        known = {f.name: f for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise ConfigError(f"{cfg_path}: unknown setting(s): {', '.join(sorted(unknown))}")
        for name in known:
            key = f"TAGGER_{name.upper()}"
            if key in env:
                values[name] = env[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        typed: dict[str, object] = {}
        for name, raw in values.items():
            default = known[name].default
            kind = type(default) if not isinstance(default, type(field)) and default is not None else str
            if name in ("models_dir", "data_dir"):
                kind = str
            if name == "review_threshold":
                kind = float
            if kind is bool and isinstance(raw, str):
                if raw.strip().lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
                    raise ConfigError(f"setting {name}={raw!r} is not a valid boolean (use 1/0, true/false)")
                typed[name] = raw.strip().lower() in ("1", "true", "yes", "on")
                continue
            try:
                typed[name] = kind(raw) if not isinstance(raw, kind) else raw
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"setting {name}={raw!r} is not a valid {kind.__name__}") from exc
        settings = cls(**typed)
        if settings.retention_days < 0 or 0 < settings.retention_days < 7:
            raise ConfigError(f"retention_days must be 0 (keep everything) or at least 7, got {settings.retention_days}"
                              " (replayed webhook deliveries are recognised for that long)")
        if settings.review_threshold is not None and not 0.0 <= settings.review_threshold <= 1.0:
            raise ConfigError(f"review_threshold must be between 0 and 1, got {settings.review_threshold}")
        return settings

    def webhook_secret(self, helpdesk: str) -> str | None:
        """The signing secret of one helpdesk, from `TAGGER_<HELPDESK>_SECRET` (never logged)."""
        return os.environ.get(f"TAGGER_{helpdesk.upper()}_SECRET") or None
