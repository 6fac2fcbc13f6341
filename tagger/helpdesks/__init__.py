"""Helpdesk adapters: one module per helpdesk, all behind `tagger.helpdesks.contract.Adapter`.

`get_adapter("zendesk")` builds an adapter from `TAGGER_ZENDESK_*` environment variables; `ADAPTERS` maps every
name to its class. Setup per helpdesk (webhook URL `/webhooks/<name>`, what to configure, which variables):
docs/helpdesks.md.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from typing import Any

from tagger.config import Settings
from tagger.errors import ConfigError, TaggerError
from tagger.helpdesks.chatwoot import ChatwootAdapter
from tagger.helpdesks.contract import Adapter, BaseAdapter, Message
from tagger.helpdesks.djangohelpdesk import DjangoHelpdeskAdapter
from tagger.helpdesks.freshdesk import FreshdeskAdapter
from tagger.helpdesks.generic import GenericAdapter
from tagger.helpdesks.helpscout import HelpScoutAdapter
from tagger.helpdesks.liveagent import LiveAgentAdapter
from tagger.helpdesks.zammad import ZammadAdapter
from tagger.helpdesks.zendesk import ZendeskAdapter

ADAPTERS: dict[str, type[BaseAdapter]] = {
    cls.name: cls
    for cls in (ZendeskAdapter, FreshdeskAdapter, ZammadAdapter, ChatwootAdapter, LiveAgentAdapter,
                HelpScoutAdapter, DjangoHelpdeskAdapter, GenericAdapter)
}
#: what a custom adapter (`--adapter MODULE:FACTORY`) must have at the least: the webhook part of `Adapter`
WEBHOOK_MEMBERS = ("verify", "parse", "write_tags", "name")


def _common(settings: Settings) -> dict[str, Any]:
    """The settings every adapter shares: replay window and the tag prefixes that say which tags are ours."""
    return {"tolerance_s": float(settings.signature_tolerance_s),
            "stage_prefix": settings.stage_tag_prefix, "sentiment_prefix": settings.sentiment_tag_prefix}


def get_adapter(name: str, env: Mapping[str, str] = os.environ, *, settings: Settings | None = None) -> Adapter:
    """The adapter for helpdesk `name`, configured from `TAGGER_<NAME>_*` variables in `env`.

    Raises `ConfigError` for an unknown name or a missing variable (the message names it). The replay window and
    the tag prefixes come from `settings` (None: `Settings.load(env)`).
    """
    key = (name or "").strip().lower()
    cls = ADAPTERS.get(key)
    if cls is None:
        raise ConfigError(f"unknown helpdesk {name!r}; known: {', '.join(sorted(ADAPTERS))}")
    return cls.from_env(env, **_common(Settings.load(dict(env)) if settings is None else settings))


# -- loading the configured adapters ------------------------------------------------------------------------------------------------
def load_adapters(extra: Iterable[str] = (), env: Mapping[str, str] | None = None,
                  settings: Settings | None = None) -> tuple[dict[str, Adapter], dict[str, str]]:
    """The built-in helpdesk adapters plus custom ones given as `module:factory` (factory(env) -> Adapter).

    Returns (adapters by name, configuration errors by name): an adapter that cannot be configured is
    reported, not fatal, so the other helpdesks keep working. The replay window and the tag prefixes come from
    `settings` (None: `Settings.load(env)`).
    """
    env = os.environ if env is None else env
    adapters: dict[str, Adapter] = {}
    errors: dict[str, str] = {}
    try:
        shared = Settings.load(dict(env)) if settings is None else settings
    except ConfigError as exc:     # every built-in adapter needs the shared settings: each reports the error
        errors.update(dict.fromkeys(ADAPTERS, str(exc)))
    else:
        for name in ADAPTERS:
            try:
                adapters[name] = get_adapter(name, env, settings=shared)
            except TaggerError as exc:
                errors[name] = str(exc)
    for spec in extra:
        adapter = load_adapter_spec(spec, env)
        adapters[adapter.name] = adapter
        errors.pop(adapter.name, None)
    return adapters, errors


def load_adapter_spec(spec: str, env: Mapping[str, str]) -> Adapter:
    """`package.module:factory` -> the adapter `factory(env)` returns (a custom in-house helpdesk)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"adapter {spec!r}: expected MODULE:FACTORY, e.g. mycompany.helpdesk:make_adapter")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"adapter {spec!r}: {exc}") from exc
    adapter = factory(env)
    if any(getattr(adapter, member, None) is None for member in WEBHOOK_MEMBERS):
        raise ConfigError(f"adapter {spec!r}: {type(adapter).__name__} lacks verify/parse/write_tags/name")
    return adapter


__all__ = ["ADAPTERS", "Adapter", "Message", "get_adapter", "load_adapters", "load_adapter_spec", "ChatwootAdapter", "DjangoHelpdeskAdapter",
           "FreshdeskAdapter", "GenericAdapter", "HelpScoutAdapter", "LiveAgentAdapter", "ZammadAdapter",
           "ZendeskAdapter"]
