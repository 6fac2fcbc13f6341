"""The ASGI app: one webhook route per helpdesk, `/healthz`, `/metrics` (and the dashboard of
tagger.service.dashboard). Run it with `tagger serve`.

    app = create_app(Settings.load())          # uvicorn tagger.service.app:app-factory style

The rules of a delivery (duplicates, agents' corrections, unchanged text, classification) are the ingest
use case's (`tagger.service.ingest`); this module reads, verifies and parses the request and maps the outcome to an
answer. A webhook is answered as soon as its message, its event id and its outbox row are committed; the
tags are written later by the worker (`tagger.service.worker`). Answers, always JSON with a `status` and, for
anything but success, a `reason`:

| status | when |
|---|---|
| 202 `tagged` | classified and queued for write-back; the labels are in the answer (with `correction` when the delivery also showed an agent's correction, and `agent_labels`: the labels agents own on this ticket, which we leave alone) |
| 200 `duplicate` | this (helpdesk, event id) was processed before (helpdesk retries are safe) |
| 200 `ignored` | a known event that carries nothing to classify (the adapter's `parse` returned None) |
| 200 `unchanged` | the text is the one we classified last for this ticket, e.g. our own tag update |
| 200 `correction` | same text, but an agent replaced one of our tags: recorded as training feedback; that label is the agent's from now on |
| 400 | the body is not UTF-8 or not JSON |
| 401 | the signature check failed (only when the helpdesk signs and `TAGGER_<NAME>_SECRET` is set) |
| 404 | no such helpdesk |
| 413 / 415 | body larger than `max_body_bytes` / not `application/json` |
| 422 | the payload lacks a field we need, or is an **unknown event type** (a subscription we do not understand is a configuration error worth seeing in the helpdesk's delivery log, so it is not silently ignored) |
| 503 | the helpdesk's adapter is not configured, or the database is unreachable |

The model is reloaded without a restart: at most every `reload_check_s` seconds the app looks at the
mtime of `models/ACTIVE.json` and, when it changed, loads the new version in the background and swaps
it in; requests in flight finish on the model they started with.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import prometheus_client as prom
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tagger.classifier.registry import ACTIVE_FILE, load_tagger
from tagger.config import Settings
from tagger.errors import ConfigError, HelpdeskError, TaggerError, WebhookError
from tagger.helpdesks import load_adapters
from tagger.helpdesks.contract import Adapter, Message
from tagger.service.access import allowed, parse_proxies
from tagger.service.dashboard import dashboard_routes
from tagger.service.ingest import TAGGED, Outcome, ingest, own_tags
from tagger.service.sanitize import install_log_redaction, no_nul, web_url
from tagger.service.store import Store, StoreError
from tagger.service.worker import DEAD, LOST, RETRY, WRITTEN, Worker

if TYPE_CHECKING:
    from tagger.classifier.model import Tagger

log = logging.getLogger("tagger.service.app")

JSON_TYPES = ("application/json",)
_TEXT_FIELDS = ("ticket_id", "text", "event_id", "channel", "subject", "event_type", "tags", "author", "lang")


# -- the model, hot-swappable --------------------------------------------------------------------------------
class ModelHolder:
    """The active Tagger. `get()` is cheap; it notices a changed `ACTIVE.json` (checked at most every
    `check_every_s`) and loads the new version in a background thread, then swaps the reference."""

    def __init__(self, settings: Settings, tagger: Tagger | None = None, *, watch: bool | None = None, check_every_s: float = 2.0):
        self.settings = settings
        self.active_file = Path(settings.models_dir) / ACTIVE_FILE
        self.watch = (tagger is None) if watch is None else watch
        self.check_every_s = check_every_s
        self._signature = self._stat()
        if tagger is not None:
            try:
                warm_up(tagger)
            except Exception:  # noqa: BLE001 - the caller's tagger; webhooks will report its failures
                log.exception("the given tagger failed its warm-up classification")
        self._tagger = tagger if tagger is not None else self._load()
        self._next_check = time.monotonic() + check_every_s
        self._reloading = threading.Lock()
        self.last_error: str | None = None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.active_file.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self):
        tagger = load_tagger(str(Path(self.settings.models_dir) / "current"),
                             review_threshold=self.settings.review_threshold,
                             fast=self.settings.fast_model or None,
                             stage_prefix=self.settings.stage_tag_prefix,
                             sentiment_prefix=self.settings.sentiment_tag_prefix)
        warm_up(tagger)
        return tagger

    @property
    def version(self) -> str:
        return str(self._tagger.metadata.get("version", "unversioned"))

    def get(self):
        if self.watch and time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + self.check_every_s
            signature = self._stat()
            if signature != self._signature and self._reloading.acquire(blocking=False):
                threading.Thread(target=self._reload, args=(signature,), name="tagger-model-reload",
                                 daemon=True).start()
        return self._tagger

    def _reload(self, signature) -> None:
        try:
            tagger = self._load()
        except Exception as exc:  # noqa: BLE001 - whatever breaks, keep serving the model we have
            self.last_error = str(exc) if isinstance(exc, TaggerError | OSError) else f"{type(exc).__name__}: {exc}"
            log.error("model reload failed, keeping %s: %s", self.version, exc)
        else:
            old, self._tagger, self.last_error = self.version, tagger, None
            log.info("model reloaded: %s -> %s", old, self.version)
        finally:
            self._signature = signature   # a broken activation is not retried until ACTIVE.json changes again
            self._reloading.release()


def warm_up(tagger: Tagger) -> None:
    """Classify once before serving, so lazy loading (language identifier, caches) happens here and not
    in the first webhooks, several at a time."""
    tagger.predict("Warm-up: where is my order?", channel="ticket")


# -- metrics -------------------------------------------------------------------------------------------------
class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

    def __init__(self, store: Store, models: ModelHolder):
        self.registry = r = prom.CollectorRegistry(auto_describe=True)
        self.store, self.models = store, models
        self.received = prom.Counter("tagger_events_received_total", "Webhook deliveries received",
                                     ["helpdesk"], registry=r)
        self.tagged = prom.Counter("tagger_events_tagged_total", "Messages classified and queued for write-back",
                                   ["helpdesk"], registry=r)
        self.skipped = prom.Counter("tagger_events_skipped_total",
                                    "Deliveries answered without classifying (duplicate, ignored, unchanged, "
                                    "correction)", ["helpdesk", "reason"], registry=r)
        self.rejected = prom.Counter("tagger_events_rejected_total", "Deliveries refused with a 4xx/5xx",
                                     ["helpdesk", "status"], registry=r)
        self.corrections = prom.Counter("tagger_corrections_total", "Agent corrections of our tags recorded",
                                        ["helpdesk"], registry=r)
        self.written = prom.Counter("tagger_tags_written_total", "Outbox rows written to the helpdesk",
                                    ["helpdesk"], registry=r)
        self.failed = prom.Counter("tagger_tag_writes_failed_total",
                                   "Failed tag writes (outcome: retry scheduled, or dead-lettered)",
                                   ["helpdesk", "outcome"], registry=r)
        self.queue_depth = prom.Gauge("tagger_outbox_queue_depth", "Outbox rows waiting to be written", registry=r)
        self.dead = prom.Gauge("tagger_outbox_dead_letters", "Outbox rows given up on", registry=r)
        self.model = prom.Info("tagger_model", "The active model version", registry=r)
        self.classify_seconds = prom.Histogram(
            "tagger_classification_seconds", "Time to classify one message", registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
        self.webhook_seconds = prom.Histogram(
            "tagger_webhook_seconds", "Time to answer one webhook delivery", ["helpdesk"], registry=r,
            buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
        self.write_seconds = prom.Histogram(
            "tagger_tag_write_seconds", "Time of one tag write to a helpdesk (any outcome)", ["helpdesk"],
            registry=r, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))

    def worker_outcome(self, helpdesk: str, outcome: str, _item, seconds: float) -> None:
        self.write_seconds.labels(helpdesk).observe(seconds)
        if outcome in (WRITTEN, LOST):
            self.written.labels(helpdesk).inc()
        elif outcome in (RETRY, DEAD):
            self.failed.labels(helpdesk, outcome).inc()

    def render(self) -> bytes:
        with contextlib.suppress(StoreError):
            counts = self.store.outbox_counts()
            self.queue_depth.set(counts["pending"])
            self.dead.set(counts["dead"])
        self.model.info({"version": self.models.version})
        return prom.generate_latest(self.registry)


# -- the webhook pipeline ------------------------------------------------------------------------------------
class Reply(Exception):
    """A finished answer (status + JSON body), raised from deep in the pipeline."""

    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(body.get("reason") or body.get("status"))
        self.status, self.body = status, body


def _error(status: int, reason: str) -> Reply:
    return Reply(status, {"status": "error", "reason": reason})


class Service:
    """Everything one running app holds: settings, store, model, adapters, metrics, worker."""

    def __init__(self, settings: Settings, store: Store, models: ModelHolder, adapters: Mapping[str, Adapter],
                 adapter_errors: Mapping[str, str], worker: Worker | None):
        self.settings, self.store, self.models = settings, store, models
        self.adapters, self.adapter_errors = dict(adapters), dict(adapter_errors)
        self.metrics = Metrics(store, models)
        self.worker = worker
        self.own_tags = own_tags(settings)
        # reads that a webhook needs from the helpdesk (a ticket's tags, for payloads that carry none)
        self.api_client = httpx.Client(timeout=settings.http_timeout_s, follow_redirects=False)

    # async part: routing, limits, reading the body ----------------------------------------------------------
    async def webhook(self, request: Request) -> Response:
        helpdesk = request.path_params["helpdesk"]
        adapter = self.adapters.get(helpdesk)
        if adapter is None:
            if helpdesk in self.adapter_errors:
                return _json(503, {"status": "error", "reason": f"helpdesk {helpdesk!r} is not configured: "
                                                               f"{self.adapter_errors[helpdesk]}"})
            known = ", ".join(sorted(self.adapters)) or "none"
            return _json(404, {"status": "error", "reason": f"unknown helpdesk {helpdesk!r} (known: {known})"})
        started = time.perf_counter()
        self.metrics.received.labels(helpdesk).inc()
        try:
            self._check_content_type(adapter, request.headers.get("content-type", ""))
            body = await self._read_body(request)
            status, answer = await run_in_threadpool(self.process, adapter, request.headers, body,
                                                     dict(request.query_params))
        except Reply as reply:
            status, answer = reply.status, reply.body
        except Exception:  # noqa: BLE001 - a bug must answer with a reason, not a stack trace
            log.exception("webhook %s failed", helpdesk)
            status, answer = 500, {"status": "error", "reason": "internal error; see the service log"}
        if status >= 400:
            self.metrics.rejected.labels(helpdesk, str(status)).inc()
            log.info("webhook %s refused with %d: %s", helpdesk, status, answer.get("reason"))
        self.metrics.webhook_seconds.labels(helpdesk).observe(time.perf_counter() - started)
        return _json(status, answer)

    @staticmethod
    def _check_content_type(adapter: Adapter, header: str) -> None:
        media = header.split(";", 1)[0].strip().lower()
        allowed = tuple(getattr(adapter, "content_types", JSON_TYPES))
        if media not in allowed and not (media.startswith("application/") and media.endswith("+json")):
            raise _error(415, f"content type {media or '(none)'!r} not accepted; send {', '.join(allowed)}")

    async def _read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _error(413, f"body of {int(declared)} bytes exceeds the limit of {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _error(413, f"body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    # sync part (thread pool): verify, parse, dedupe, classify, store ----------------------------------------
    def process(self, adapter: Adapter, headers: Mapping[str, str], body: bytes,
                query: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        name = adapter.name
        try:
            adapter.verify(headers, body, time.time(), query=query)
        except WebhookError as exc:
            raise _error(exc.status, exc.reason) from None
        payload = decode_json(body)
        message = self._parse(adapter, payload, headers)
        if message is None:
            self.metrics.skipped.labels(name, "ignored").inc()
            return 200, {"status": "ignored", "reason": f"{name} event carries nothing to classify"}
        read_tags = None
        if not getattr(adapter, "payload_has_tags", True):
            def read_tags() -> tuple[str, ...]:
                try:
                    return tuple(adapter.read_tags(self.api_client, message.ticket_id))
                except (HelpdeskError, ConfigError) as exc:  # no tags to compare: no correction seen this time
                    log.warning("%s ticket %s: could not read its tags: %s", name, message.ticket_id, exc)
                    return tuple(message.tags)
        try:
            outcome = ingest(self.store, self.models.get(), message, self.settings, read_tags=read_tags,
                             on_queued=self.worker.notify if self.worker is not None else None)
        except StoreError as exc:
            log.error("database unavailable: %s", exc)
            raise _error(503, "database unavailable; retry later") from None
        return self._answer(message, outcome)

    def _answer(self, message: Message, outcome: Outcome) -> tuple[int, dict[str, Any]]:
        """The HTTP answer of an ingest outcome, and its metrics."""
        name = message.helpdesk
        if outcome.classify_seconds is not None:
            self.metrics.classify_seconds.observe(outcome.classify_seconds)
        if outcome.correction is not None:
            self.metrics.corrections.labels(name).inc()
            c = outcome.correction
            log.info("correction on %s ticket %s: %s/%s -> %s/%s", name, message.ticket_id, c["old"]["stage"],
                     c["old"]["sentiment"], c["new"]["stage"], c["new"]["sentiment"])
        if outcome.status == TAGGED:
            self.metrics.tagged.labels(name).inc()
            return 202, outcome.body
        self.metrics.skipped.labels(name, outcome.status).inc()
        return 200, outcome.body

    def _parse(self, adapter: Adapter, payload: Any, headers: Mapping[str, str]) -> Message | None:
        try:
            message = adapter.parse(payload, headers)
        except WebhookError as exc:
            if exc.status < 400:   # an adapter may also ignore an event by raising with a 2xx and a reason
                self.metrics.skipped.labels(adapter.name, "ignored").inc()
                raise Reply(exc.status, {"status": "ignored", "reason": exc.reason}) from None
            raise _error(exc.status, exc.reason) from None
        except Exception as exc:  # noqa: BLE001 - an adapter tripping over odd input is still a bad payload
            log.warning("%s adapter could not parse a payload: %r", adapter.name, exc)
            raise _error(422, f"payload not understood by the {adapter.name} adapter "
                              f"({exc.__class__.__name__})") from None
        if message is None:
            return None
        for field in ("ticket_id", "event_id"):
            value = getattr(message, field)
            if not isinstance(value, str) or not value.strip():
                raise _error(422, f"missing field {field}")
        if not isinstance(message.text, str):
            raise _error(422, "missing field text")
        # NUL bytes cannot be stored in PostgreSQL text (they would fail every retry of the delivery); a link
        # we show to agents must be a web link (no `javascript:`, no control characters)
        return dataclasses.replace(message, **{f: no_nul(getattr(message, f)) for f in _TEXT_FIELDS},
                                   url=web_url(message.url))

    # health and metrics -------------------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        def check() -> tuple[bool, dict[str, int] | None]:
            try:
                return True, self.store.outbox_counts()
            except StoreError:
                return False, None

        db_ok, counts = await run_in_threadpool(check)
        self.models.get()
        if not allowed(request, (self.settings.api_token, self.settings.metrics_token), self.settings.trusted_proxies):
            # a load balancer's probe needs only this; versions, queues and helpdesks are for operators
            return _json(200 if db_ok else 503, {"status": "ok" if db_ok else "degraded"})
        body = {"status": "ok" if db_ok else "degraded", "model_version": self.models.version,
                "db": "ok" if db_ok else "unreachable",
                "queue_depth": counts["pending"] if counts else None,
                "dead_letters": counts["dead"] if counts else None,
                "worker": "running" if self.worker is not None else "off",
                "helpdesks": sorted(self.adapters), "unconfigured": sorted(self.adapter_errors)}
        if self.models.last_error:
            body["model_reload_error"] = self.models.last_error
        return _json(200 if db_ok else 503, body)

    async def metrics_endpoint(self, request: Request) -> Response:
        tokens = (self.settings.metrics_token,) if self.settings.metrics_token else (self.settings.api_token,)
        if not allowed(request, tokens, self.settings.trusted_proxies):
            if not any(tokens):
                return _json(403, {"status": "forbidden", "reason": "/metrics is open to localhost only; set "
                                   "TAGGER_METRICS_TOKEN (or TAGGER_API_TOKEN) and scrape with it as a Bearer token"})
            return _json(401, {"status": "unauthorized", "reason": "missing or wrong token (Authorization: Bearer "
                               "<TAGGER_METRICS_TOKEN or TAGGER_API_TOKEN>)"}, headers={"WWW-Authenticate": "Bearer"})
        data = await run_in_threadpool(self.metrics.render)
        return Response(data, media_type=prom.CONTENT_TYPE_LATEST)


def decode_json(body: bytes) -> Any:
    """Strict UTF-8 and JSON, or a 400 that says where it broke."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(400, f"body is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _error(400, f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise _error(400, "body is not usable JSON: nested too deeply") from None


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    return _json(status, {"status": "error", "reason": getattr(exc, "detail", None) or "error"})


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s", request.url.path, exc_info=exc)
    return _json(500, {"status": "error", "reason": "internal error; see the service log"})


def create_app(settings: Settings | None = None, tagger: Tagger | None = None, *, store: Store | None = None,
               adapters: Mapping[str, Adapter] | None = None, extra_adapters: tuple[str, ...] = (),
               run_worker: bool = True, watch_models: bool | None = None, reload_check_s: float = 2.0,
               worker_options: dict[str, Any] | None = None, dashboard: bool = True) -> Starlette:
    """The ASGI app. `tagger=None` loads the active model from `settings.models_dir` and watches it for
    activations; `adapters=None` uses the built-in helpdesk adapters (plus `extra_adapters`,
    `module:factory` specs); `run_worker` starts the outbox worker thread with the app; `dashboard` mounts
    the team leads' dashboard (tagger.service.dashboard: /dashboard, /api/summary, /api/tickets)."""
    settings = settings or Settings.load()
    install_log_redaction()  # no ?token=... in access logs
    parse_proxies(settings.trusted_proxies)  # a typo in TAGGER_TRUSTED_PROXIES stops the start, with the entry
    models = ModelHolder(settings, tagger, watch=watch_models, check_every_s=reload_check_s)
    store = store or Store(settings.db_url)
    if adapters is None:
        adapters, adapter_errors = load_adapters(extra_adapters, settings=settings)
    else:
        adapter_errors = {}
    if adapter_errors:
        log.info("helpdesks not configured (their webhooks answer 503 with the reason): %s",
                 ", ".join(sorted(adapter_errors)))
    service = Service(settings, store, models, adapters, adapter_errors, None)
    if run_worker:
        service.worker = Worker(store, service.adapters, settings, on_outcome=service.metrics.worker_outcome,
                                **(worker_options or {}))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        install_log_redaction()  # again: the server configures its log handlers after the app is built
        if service.worker is not None:
            service.worker.start()
        log.info("serving model %s, helpdesks: %s", models.version, ", ".join(sorted(service.adapters)) or "none")
        try:
            yield
        finally:
            if service.worker is not None:
                await run_in_threadpool(service.worker.stop)

    routes = [
        Route("/webhooks/{helpdesk}", service.webhook, methods=["POST"]),
        Route("/healthz", service.healthz, methods=["GET"]),
        Route("/metrics", service.metrics_endpoint, methods=["GET"]),
    ]
    if dashboard:
        routes += dashboard_routes(store, settings)
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.service = service
    return app


__all__ = ["create_app", "Service", "ModelHolder", "Metrics", "own_tags", "decode_json"]
