"""Helpdesk adapters: one module per helpdesk, all behind `tagger.helpdesks.base.Adapter`.

`get_adapter("zendesk")` builds an adapter from `TAGGER_ZENDESK_*` environment variables; `ADAPTERS` maps every
name to its class. Setup per helpdesk (webhook URL `/webhooks/<name>`, what to configure, which variables):
docs/helpdesks.md.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tagger.errors import ConfigError
from tagger.helpdesks.base import Adapter, BaseAdapter, Message
from tagger.helpdesks.chatwoot import ChatwootAdapter
from tagger.helpdesks.djangohelpdesk import DjangoHelpdeskAdapter
from tagger.helpdesks.freshdesk import FreshdeskAdapter
from tagger.helpdesks.generic import GenericAdapter
from tagger.helpdesks.helpscout import HelpScoutAdapter
from tagger.helpdesks.liveagent import LiveAgentAdapter
from tagger.helpdesks.zammad import ZammadAdapter
from tagger.helpdesks.zendesk import ZendeskAdapter

if TYPE_CHECKING:
    from tagger.config import Settings

ADAPTERS: dict[str, type[BaseAdapter]] = {
    cls.name: cls
    for cls in (ZendeskAdapter, FreshdeskAdapter, ZammadAdapter, ChatwootAdapter, LiveAgentAdapter,
                HelpScoutAdapter, DjangoHelpdeskAdapter, GenericAdapter)
}


def _common(env: Mapping[str, str], settings: Settings | None) -> dict[str, Any]:
    """The settings every adapter shares: replay window and the tag prefixes that say which tags are ours."""
    if settings is not None:
        return {"tolerance_s": float(settings.signature_tolerance_s),
                "stage_prefix": settings.stage_tag_prefix, "sentiment_prefix": settings.sentiment_tag_prefix}
    raw = env.get("TAGGER_SIGNATURE_TOLERANCE_S") or "300"
    try:
        tolerance = float(raw)
    except ValueError as exc:
        raise ConfigError(f"TAGGER_SIGNATURE_TOLERANCE_S={raw!r} is not a number of seconds") from exc
    return {"tolerance_s": tolerance,
            "stage_prefix": env.get("TAGGER_STAGE_TAG_PREFIX") or "mot_",
            "sentiment_prefix": env.get("TAGGER_SENTIMENT_TAG_PREFIX") or "sentiment_"}


def get_adapter(name: str, env: Mapping[str, str] = os.environ, *, settings: Settings | None = None) -> Adapter:
    """The adapter for helpdesk `name`, configured from `TAGGER_<NAME>_*` variables in `env`.

    Raises `ConfigError` for an unknown name or a missing variable (the message names it). `settings`, when
    given, supplies the replay window and tag prefixes (else `TAGGER_SIGNATURE_TOLERANCE_S`,
    `TAGGER_STAGE_TAG_PREFIX`, `TAGGER_SENTIMENT_TAG_PREFIX` from `env`).
    """
    key = (name or "").strip().lower()
    cls = ADAPTERS.get(key)
    if cls is None:
        raise ConfigError(f"unknown helpdesk {name!r}; known: {', '.join(sorted(ADAPTERS))}")
    return cls.from_env(env, **_common(env, settings))


__all__ = ["ADAPTERS", "Adapter", "Message", "get_adapter", "ChatwootAdapter", "DjangoHelpdeskAdapter",
           "FreshdeskAdapter", "GenericAdapter", "HelpScoutAdapter", "LiveAgentAdapter", "ZammadAdapter",
           "ZendeskAdapter"]
