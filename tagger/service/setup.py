"""Setting helpdesks up and checking on them: what `tagger setup`, `tagger doctor` and the service's start-up
do with the adapters' `prepare` / `check` / `setup` (tagger.helpdesks.contract), kept out of the CLI so that
each command only prints what these return."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tagger.errors import ConfigError, HelpdeskError, TaggerError
from tagger.helpdesks.contract import SetupStep
from tagger.service.sanitize import web_url

if TYPE_CHECKING:
    import httpx

    from tagger.helpdesks.contract import Adapter


def webhook_url(helpdesk: str, url: str) -> str:
    """The webhook URL the helpdesk must call: `url` as given, or with `/webhooks/<helpdesk>` added."""
    if not web_url(url):
        raise ConfigError(f"{url!r} is not an http(s) URL")
    url = url.rstrip("/")
    return url if url.endswith(f"/webhooks/{helpdesk}") else f"{url}/webhooks/{helpdesk}"


def set_up(adapter: Adapter, client: httpx.Client, webhook: str) -> list[SetupStep]:
    """`tagger setup`: the adapter's check, then its setup for the webhook URL `webhook` (see `webhook_url`)."""
    return [*adapter.check(client), *adapter.setup(client, webhook)]


def prepare_all(adapters: Mapping[str, Adapter], client: httpx.Client) -> list[tuple[str, SetupStep]]:
    """At start-up: each helpdesk made able to show our tags (labels created). A ConfigError (it cannot, and
    says how to fix it) is raised, prefixed with the helpdesk; a helpdesk that cannot be reached now gives a
    `warning` step instead (the webhooks still work; `tagger setup` or the next start creates what is missing)."""
    done: list[tuple[str, SetupStep]] = []
    for name, adapter in sorted(adapters.items()):
        prepare = getattr(adapter, "prepare", None)
        if prepare is None:
            continue
        try:
            done += [(name, step) for step in prepare(client)]
        except HelpdeskError as exc:
            done.append((name, SetupStep("warning", "labels", f"could not check them now ({exc}); run "
                                                              f"`tagger setup {name}`")))
        except TaggerError as exc:
            raise ConfigError(f"{name}: {exc}") from exc
    return done


@dataclass
class Diagnosis:
    """What `tagger doctor` reports of one helpdesk."""

    helpdesk: str
    steps: list[SetupStep]
    last_event: dt.datetime | None
    outbox: dict[str, int] = field(default_factory=dict)

    @property
    def problems(self) -> int:
        return sum(step.action in ("failed", "missing") for step in self.steps) + bool(self.outbox.get("dead"))


def diagnose(adapters: Mapping[str, Adapter], activity: Mapping[str, Mapping[str, Any]],
             client: httpx.Client) -> list[Diagnosis]:
    """Per configured helpdesk: its read-only check (a failure becomes a `failed` step), when its last webhook
    was processed and its outbox rows per status (`activity`: `Store.helpdesk_activity()`)."""
    out = []
    for name, adapter in sorted(adapters.items()):
        try:
            steps = adapter.check(client)
        except (TaggerError, HelpdeskError) as exc:
            steps = [SetupStep("failed", f"{name} API", str(exc))]
        seen = dict(activity.get(name, {}))
        last = seen.pop("last_event", None)
        out.append(Diagnosis(name, steps, last, {k: int(v) for k, v in seen.items()}))
    return out
