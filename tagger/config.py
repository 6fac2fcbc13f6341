"""Settings: environment variables first, then one optional TOML file, then built-in defaults.

Every setting is documented in one table in the README. `TAGGER_CONFIG` names the TOML file
(default `tagger.toml` in the working directory, if present); its keys are the variable names
without the `TAGGER_` prefix, in lower case (e.g. `review_threshold = 0.6`).
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import Field, dataclass, field, fields
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
    trusted_proxies: str = ""                # reverse proxies whose X-Forwarded-For is believed (tagger.service.access)
    activation_max_drop: float = 0.02
    retention_days: int = 0                  # 0: keep messages forever; else `tagger prune` (and the worker) removes older ones
    prune_every_s: float = 3600.0

    @classmethod
    def load(cls, env: dict[str, str] | None = None, **overrides) -> Settings:
        """Read settings from the config file and `TAGGER_*` environment variables; overrides win."""
        env = dict(os.environ if env is None else env)
        known = {f.name: f for f in fields(cls)}
        values = _read_config_file(env, known)
        values.update(_from_env(env, known))
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**{name: _typed(name, raw, known[name]) for name, raw in values.items()})
        _check_ranges(settings)
        return settings

    def webhook_secret(self, helpdesk: str) -> str | None:
        """The signing secret of one helpdesk, from `TAGGER_<HELPDESK>_SECRET` (never logged)."""
        return os.environ.get(f"TAGGER_{helpdesk.upper()}_SECRET") or None


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _read_config_file(env: dict[str, str], known: dict[str, Field]) -> dict[str, object]:
    """The settings of the TOML file that `TAGGER_CONFIG` names (default `tagger.toml`, which may be
    absent; a file named explicitly must exist). Unknown keys are refused: a typo would otherwise be
    ignored silently."""
    values: dict[str, object] = {}
    cfg_path = env.get("TAGGER_CONFIG", "tagger.toml")
    if Path(cfg_path).is_file():
        try:
            values.update(tomllib.loads(Path(cfg_path).read_text(encoding="utf-8")))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{cfg_path}: not valid TOML: {exc}") from exc
    elif "TAGGER_CONFIG" in env:
        raise ConfigError(f"TAGGER_CONFIG points to {cfg_path}, which does not exist")
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"{cfg_path}: unknown setting(s): {', '.join(sorted(unknown))}")
    return values


def _from_env(env: dict[str, str], known: dict[str, Field]) -> dict[str, str]:
    """The settings given as `TAGGER_<NAME>` environment variables, as raw strings."""
    return {name: env[f"TAGGER_{name.upper()}"] for name in known if f"TAGGER_{name.upper()}" in env}


def _kind(name: str, spec: Field) -> type:
    """The type a setting's value is converted to: its default's type, str where the default comes from a
    factory (the directories), float for `review_threshold` (whose default is None)."""
    if name in ("models_dir", "data_dir"):
        return str
    if name == "review_threshold":
        return float
    default = spec.default
    return type(default) if not isinstance(default, type(field)) and default is not None else str


def _typed(name: str, raw: object, spec: Field) -> object:
    """`raw` (a string from the environment, or a TOML or override value) converted to the setting's type."""
    kind = _kind(name, spec)
    if kind is bool and isinstance(raw, str):
        return _boolean(name, raw)
    try:
        return kind(raw) if not isinstance(raw, kind) else raw
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}={raw!r} is not a valid {kind.__name__}") from exc


def _boolean(name: str, raw: str) -> bool:
    word = raw.strip().lower()
    if word not in _TRUE + _FALSE:
        raise ConfigError(f"setting {name}={raw!r} is not a valid boolean (use 1/0, true/false)")
    return word in _TRUE


def _check_ranges(settings: Settings) -> None:
    """Values of the right type that still make no sense."""
    if settings.retention_days < 0 or 0 < settings.retention_days < 7:
        raise ConfigError(f"retention_days must be 0 (keep everything) or at least 7, got {settings.retention_days}"
                          " (replayed webhook deliveries are recognised for that long)")
    if settings.review_threshold is not None and not 0.0 <= settings.review_threshold <= 1.0:
        raise ConfigError(f"review_threshold must be between 0 and 1, got {settings.review_threshold}")
