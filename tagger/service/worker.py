"""The outbox worker: writes the tags of classified messages to the helpdesks.

It claims due outbox rows with a lease, calls `adapter.write_tags` for each, and only then marks the
row done; a failed write is retried with exponential backoff and full jitter (at least `Retry-After`
when the helpdesk sent one); permanent errors, and rows older than `outbox_max_age_s`, go to the
dead-letter list (`tagger outbox --status dead`, `tagger outbox retry`). A worker killed mid-write
leaves its row leased; another worker (or the same one, restarted) takes it once the lease expires,
so no tag is lost. Runs as a thread inside `tagger serve` or alone as `tagger worker`.
"""
from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import httpx

from tagger.config import Settings
from tagger.errors import HelpdeskError, TaggerError
from tagger.helpdesks.contract import Adapter
from tagger.service.store import OutboxItem, Store, StoreError, utcnow

log = logging.getLogger("tagger.service.worker")

# outcome names passed to `on_outcome` (the service turns them into metrics)
WRITTEN, RETRY, DEAD, LOST = "written", "retry", "dead", "lost_lease"


def backoff_delay(attempts: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Full jitter: a uniform delay in [0, min(max, base * 2^(attempts-1))] (AWS architecture blog)."""
    ceiling = min(max_s, base_s * 2 ** max(0, attempts - 1))
    return (rng or random).uniform(0.0, ceiling)


def default_lease_s(settings: Settings) -> float:
    """Long enough for a write of a few API calls that each may take up to the HTTP timeout."""
    return 4 * settings.http_timeout_s + 1


class Worker:
    """Drains the outbox. `run_once()` does one round (tests, `tagger worker --once`); `start()` keeps up to
    `concurrency` writes in flight in a background thread until `stop()` (see `run_forever`)."""

    def __init__(self, store: Store, adapters: Mapping[str, Adapter], settings: Settings, *,
                 client: httpx.Client | None = None, concurrency: int | None = None, lease_s: float | None = None,
                 on_outcome: Callable[[str, str, OutboxItem, float], None] | None = None,
                 rng: random.Random | None = None):
        self.store, self.adapters, self.settings = store, adapters, settings
        self.concurrency = max(1, concurrency or settings.worker_concurrency)
        self.client = client or httpx.Client(timeout=settings.http_timeout_s, follow_redirects=False,
                                             limits=_pool_limits(self.concurrency))
        self._own_client = client is None
        self.lease_s = lease_s if lease_s is not None else default_lease_s(settings)
        self.on_outcome = on_outcome
        self.rng = rng or random.Random()
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="tagger-write")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pruner: threading.Thread | None = None
        self._thread: threading.Thread | None = None

    # -- the outbox step: every driver below is made of it -------------------------------------------------------
    def _step(self, inflight: dict[Future, OutboxItem], want: int) -> tuple[int, int]:
        """Mark every write finished since the last step done and claim up to `want` due rows, in one
        transaction (`Store.settle_and_claim`), report the finished ones and start writing the claimed
        ones. Returns (finished, claimed). A step that cannot reach the database records nothing: the
        written rows are written again once their lease expires, the failed ones are retried."""
        finished = [future for future in inflight if future.done()]
        for future in finished:
            del inflight[future]
        if not finished and not want:
            return 0, 0
        results = [future.result() for future in finished]
        written = [item for item, exc, _s in results if exc is None]
        step = self._guard(self.store.settle_and_claim, written, limit=want, lease_s=self.lease_s)
        if step is None:                    # not recorded: those rows are written again after their lease
            step, results = (set(), []), [r for r in results if r[1] is not None]
        done, claimed = step
        self._guard(self._settle, results, done)
        for item in claimed:
            future = self._pool.submit(self._write, item)
            future.add_done_callback(self._written)
            inflight[future] = item
        return len(finished), len(claimed)

    def _wanted(self, inflight: dict[Future, OutboxItem], stopping: bool) -> int:
        """Rows to claim now: only once a quarter of the slots are free (or none is busy), so under load
        one transaction covers many rows; and a row is claimed only when a slot can write it at once, so
        its lease covers the write and nothing else."""
        free = self.concurrency - len(inflight)
        refill_at = max(1, self.concurrency // 4)
        return free if not stopping and free and (free >= refill_at or not inflight) else 0

    def _finish(self, inflight: dict[Future, OutboxItem]) -> None:
        """Wait for the writes in flight and record them."""
        wait(list(inflight))
        self._step(inflight, 0)

    def run_once(self) -> int:
        """One round: claim due rows (up to `concurrency`), write them in parallel, record the outcomes;
        returns how many were attempted."""
        inflight: dict[Future, OutboxItem] = {}
        _finished, claimed = self._step(inflight, self.concurrency)
        self._finish(inflight)
        return claimed

    def _settle(self, results: list[tuple[OutboxItem, Exception | None, float]], done: set[int]) -> None:
        """Report finished writes (`done`: the ids marked done); each failure is retried later or
        dead-lettered."""
        for item, exc, seconds in results:
            if exc is not None:
                outcome = self._failed(item, exc)
            elif item.id in done:
                outcome = WRITTEN
            else:
                outcome = LOST
                log.warning("outbox #%s: written, but the lease expired meanwhile", item.id)
            self._report(item, outcome, seconds)

    def drain(self, timeout_s: float = 10.0) -> int:
        """Write everything that is due (`tagger worker --once`, tests) with the steps `run_forever` takes,
        until nothing is due or in flight, or `timeout_s` passed; returns the rows attempted."""
        deadline, total = time.monotonic() + timeout_s, 0
        inflight: dict[Future, OutboxItem] = {}
        while time.monotonic() < deadline:
            _finished, claimed = self._step(inflight, self._wanted(inflight, stopping=False))
            total += claimed
            if not inflight and not claimed:
                break
            wait(list(inflight), timeout=max(0.0, deadline - time.monotonic()), return_when=FIRST_COMPLETED)
        self._finish(inflight)
        return total

    def process(self, item: OutboxItem) -> str:
        """Write one claimed row's tags and record the outcome (`written`, `retry`, `dead`, `lost_lease`)."""
        item, exc, seconds = self._write(item)
        if exc is not None:
            outcome = self._failed(item, exc)
        else:
            outcome = WRITTEN if self.store.mark_done(item) else LOST
        self._report(item, outcome, seconds)
        return outcome

    def _write(self, item: OutboxItem) -> tuple[OutboxItem, Exception | None, float]:
        """Call the adapter. Never raises: a bug in an adapter must not stop the worker (the row is retried
        and in the end dead-lettered)."""
        started = time.perf_counter()
        try:
            adapter = self.adapters.get(item.helpdesk)
            if adapter is None:
                raise HelpdeskError(f"no adapter configured for helpdesk {item.helpdesk!r} "
                                    f"(configured: {', '.join(sorted(self.adapters)) or 'none'})")
            if not (item.recovered and self._already_on_ticket(adapter, item)):
                adapter.write_tags(self.client, item.ticket_id, list(item.add), list(item.remove))
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the row
            return item, exc, time.perf_counter() - started
        return item, None, time.perf_counter() - started

    def _already_on_ticket(self, adapter: Adapter, item: OutboxItem) -> bool:
        """For a row whose earlier write was cut off (worker killed): whether the ticket already shows it (our
        tags added, our stale ones gone), read back where the adapter can (`read_tags`). Then it is not sent
        again; if the tags cannot be read, it is (writes are idempotent)."""
        read = getattr(adapter, "read_tags", None)
        if read is None:
            return False
        try:
            tags = set(read(self.client, item.ticket_id))
        except Exception:  # noqa: BLE001 - no answer: write again, which is safe
            return False
        applied = set(item.add) <= tags and not (set(item.remove) - set(item.add)) & tags
        if applied:
            log.info("outbox #%s: ticket %s already shows this write (its worker was cut off); not sent again",
                     item.id, item.ticket_id)
        return applied

    def _report(self, item: OutboxItem, outcome: str, seconds: float) -> None:
        if self.on_outcome is not None:
            try:
                self.on_outcome(item.helpdesk, outcome, item, seconds)
            except Exception:  # noqa: BLE001
                log.exception("on_outcome hook failed")

    def _failed(self, item: OutboxItem, exc: Exception) -> str:
        error = _describe(exc)
        now = utcnow()
        age = (now - item.queued_at).total_seconds()
        if isinstance(exc, HelpdeskError) and exc.permanent:
            reason = f"permanent error: {error}"
        elif age >= self.settings.outbox_max_age_s:
            reason = f"gave up after {item.attempts} attempts over {age:.0f}s: {error}"
        else:
            delay = backoff_delay(item.attempts, self.settings.outbox_base_delay_s,
                                  self.settings.outbox_max_delay_s, self.rng)
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                delay = max(delay, float(retry_after))
            self.store.mark_retry(item, error, now + dt.timedelta(seconds=delay), now=now)
            log.info("outbox #%s (%s ticket %s): attempt %d failed, retry in %.2fs: %s", item.id,
                     item.helpdesk, item.ticket_id, item.attempts, delay, error)
            return RETRY
        self.store.mark_dead(item, reason, now=now)
        log.warning("outbox #%s (%s ticket %s) dead-lettered: %s", item.id, item.helpdesk, item.ticket_id, reason)
        return DEAD

    # -- background loop -----------------------------------------------------------------------------------
    def notify(self) -> None:
        """A new outbox row was committed: look now instead of at the next poll."""
        self._wake.set()

    def run_forever(self) -> None:
        """Keep up to `concurrency` writes in flight until `stop()`, then finish the ones in flight.

        No round waits for its slowest write: each `_step` records what finished and refills the free
        slots (see `_wanted`). Sleeps `worker_poll_s` when idle, or until `notify()` or a write ends."""
        inflight: dict[Future, OutboxItem] = {}
        while True:
            self._wake.clear()                      # before looking: a wake-up from now on is not lost
            stopping = self._stop.is_set()
            if stopping and not inflight:
                return
            finished, _claimed = self._step(inflight, self._wanted(inflight, stopping))
            if finished:
                continue                            # look again at once: more may have finished meanwhile
            self._wake.wait(self.settings.worker_poll_s)

    def _written(self, _future: Future) -> None:
        self._wake.set()

    @staticmethod
    def _guard(step: Callable, *args, **kwargs):
        """Run one step of the loop; a failure is logged, not raised (the rows are safe in the outbox: a
        claimed one is taken again when its lease expires)."""
        try:
            return step(*args, **kwargs)
        except (StoreError, TaggerError) as exc:
            log.error("worker step failed: %s", exc)
        except Exception:  # noqa: BLE001 - keep the loop alive
            log.exception("worker step failed")
        return None

    def start(self) -> Worker:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run_forever, name="tagger-worker", daemon=True)
        self._thread.start()
        if self.settings.retention_days > 0:
            self._pruner = threading.Thread(target=self.prune_forever, name="tagger-prune", daemon=True)
            self._pruner.start()
        return self

    def prune_forever(self) -> None:
        """Retention: `Store.prune` of what is older than `retention_days`, at start and every
        `prune_every_s`, until `stop()` (several workers may do it at once: the store serialises them)."""
        while not self._stop.is_set():
            cutoff = utcnow() - dt.timedelta(days=self.settings.retention_days)
            removed = self._guard(self.store.prune, cutoff)
            if removed and removed["messages"]:
                log.info("retention: removed %(messages)d messages, %(outbox)d outbox rows, %(events)d event ids",
                         removed)
            self._stop.wait(self.settings.prune_every_s)

    def stop(self, timeout_s: float | None = None) -> None:
        """Finish the writes in flight, then stop (rows not finished stay leased and are re-claimed later)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s if timeout_s is not None else self.settings.http_timeout_s * 4 + 5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._own_client:
            self.client.close()


def _pool_limits(concurrency: int) -> httpx.Limits:
    """At least one kept-alive connection per write slot (httpx keeps 20 by default), so a worker with
    more slots does not open a new connection for most writes."""
    return httpx.Limits(max_connections=max(100, concurrency), max_keepalive_connections=max(20, concurrency))


def _describe(exc: Exception) -> str:
    if isinstance(exc, HelpdeskError):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout: {exc.__class__.__name__} {exc}".strip()
    if isinstance(exc, httpx.TransportError):
        return f"connection failed: {exc.__class__.__name__} {exc}".strip()
    return f"{exc.__class__.__name__}: {exc}"


