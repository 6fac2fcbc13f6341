"""Tagging a large export: streamed in chunks (never loaded whole), classified in parallel on local
cores (joblib) or on a Dask cluster, written in input order, resumable after an interruption.

`backfill_helpdesk` does the same for a helpdesk's ticket history, paged through its listing API (see each
adapter's `list_tickets`), and can queue the labels for write-back through the store's outbox.

Resume works from a checkpoint beside the output (`<output>.progress.json`): after every chunk
the output is flushed and fsynced, then the checkpoint records how many input lines and output
bytes are done. On `--resume` the output is cut back to the recorded length and reading restarts
after the recorded line, so a kill at any moment loses or duplicates nothing.
"""
from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.classifier.data import input_record
from tagger.errors import TaggerError

if TYPE_CHECKING:
    import httpx

    from tagger.classifier.model import Tagger
    from tagger.config import Settings
    from tagger.helpdesks.contract import Adapter
    from tagger.service.store import Store

log = logging.getLogger("tagger.service.backfill")

_MODELS: dict[str, Any] = {}  # per worker process: model path -> loaded Tagger


@dataclass
class Chunk:
    index: int
    last_line: int       # input line (or CSV row) number of the chunk's last record
    records: list[dict]


def _open_records(path: Path, skip: int) -> Iterator[tuple[int, dict]]:
    """(line number, record) for every record after the first `skip` lines; a bad line becomes an
    {"error"} record so the output stays aligned with the input."""
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8", errors="replace", newline="") as fh:
            for number, row in enumerate(csv.DictReader(fh), 1):
                if number > skip:
                    yield number, dict(row) if row.get("text") is not None else {"error": "missing \"text\" (a string)", "line": number}
        return
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            if number > skip and (record := input_record(raw, number)) is not None:
                yield number, record


def _chunks(records: Iterable[tuple[int, dict]], size: int, start_index: int) -> Iterator[Chunk]:
    it = iter(records)
    for index in itertools.count(start_index):
        batch = list(itertools.islice(it, size))
        if not batch:
            return
        yield Chunk(index=index, last_line=batch[-1][0], records=[r for _n, r in batch])


def _apply(tagger: Tagger, overrides: dict | None) -> None:
    """Settings that override the model's own (review_threshold, fast); None keeps the model's."""
    for key, value in (overrides or {}).items():
        if value is not None:
            setattr(tagger, key, value)


def classify_records(model_path: str, records: list[dict], overrides: dict | None = None) -> list[str]:
    """Classify one chunk in a worker (the model is loaded once per process and cached); returns the
    output lines."""
    tagger = _MODELS.get(model_path)
    if tagger is None:
        from tagger.classifier.registry import load_tagger

        tagger = _MODELS[model_path] = load_tagger(model_path)
    _apply(tagger, overrides)
    good = [r for r in records if "error" not in r]
    preds = iter(tagger.predict_many([r["text"] for r in good], [r.get("channel") for r in good]))
    lines = []
    for r in records:
        if "error" not in r:
            r = {**r, **next(preds).to_dict()}
        lines.append(json.dumps(r, ensure_ascii=False))
    return lines


def classify_with_model(tagger: Tagger, records: list[dict]) -> list[str]:
    """Like `classify_records`, for a Tagger object that was shipped to the worker (Dask scatter)."""
    key = f"obj:{id(tagger)}"
    _MODELS[key] = tagger
    return classify_records(key, records)


class Checkpoint:
    def __init__(self, output: Path, source: Path):
        self.path = output.with_name(output.name + ".progress.json")
        self.source = source

    def fingerprint(self) -> str:
        st = self.source.stat()
        with self.source.open("rb") as fh:
            head = fh.read(1 << 16)
        return hashlib.sha256(f"{st.st_size}:{head!r}".encode()).hexdigest()[:16]

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        state = json.loads(self.path.read_text(encoding="utf-8"))
        if state.get("source") != self.fingerprint():
            raise TaggerError(f"{self.path} belongs to another input file; delete it or run without --resume")
        return state

    def save(self, state: dict) -> None:
        _save_state(self.path, {**state, "source": self.fingerprint()})


def _save_state(path: Path, state: dict) -> None:
    """Replace a checkpoint atomically: a crash leaves the old one or the new one, never half of one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, path)


def backfill(source: str | Path, output: str | Path, model_path: str, *, workers: int = 1, chunk_size: int = 2000,
             resume: bool = False, dask_address: str | None = None, overrides: dict | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Tag every record of `source` into `output` (JSONL). Returns counts: lines, errors, chunks."""
    source, output = Path(source), Path(output)
    if not source.is_file():
        raise TaggerError(f"{source}: no such file")
    checkpoint = Checkpoint(output, source)
    state = checkpoint.load() if resume else None
    if state is None and output.exists() and output.stat().st_size and not resume:
        raise TaggerError(f"{output} exists; use --resume to continue it or remove it")
    state = state or {"lines_done": 0, "output_bytes": 0, "chunks_done": 0, "errors": 0}
    mode = "r+b" if output.exists() else "wb"
    with open(output, mode) as out:
        out.truncate(state["output_bytes"])
        out.seek(state["output_bytes"])
        chunks = _chunks(_open_records(source, state["lines_done"]), chunk_size, state["chunks_done"])
        results = _run(chunks, model_path, workers, dask_address, overrides)
        for chunk, lines in results:
            data = ("\n".join(lines) + "\n").encode("utf-8")
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
            state["lines_done"] = chunk.last_line
            state["output_bytes"] += len(data)
            state["chunks_done"] = chunk.index + 1
            state["errors"] += sum('"error"' in line[:12] for line in lines)
            checkpoint.save(state)
            if progress:
                progress(len(chunk.records), state["lines_done"])
    return {"lines": state["lines_done"], "errors": state["errors"], "chunks": state["chunks_done"]}


def _run(chunks: Iterator[Chunk], model_path: str, workers: int, dask_address: str | None,
         overrides: dict | None) -> Iterator[tuple[Chunk, list[str]]]:
    """Classify chunks in order: in this process, on local worker processes, or on a Dask cluster.
    At most a few chunks per worker are in flight, so memory stays bounded whatever the input size."""
    if dask_address:
        yield from _run_dask(chunks, model_path, dask_address, overrides)
        return
    if workers <= 1:
        for chunk in chunks:
            yield chunk, classify_records(model_path, chunk.records, overrides)
        return
    from joblib import Parallel, delayed

    pending: list[Chunk] = []

    def tasks():
        for chunk in chunks:
            pending.append(chunk)
            yield delayed(classify_records)(model_path, chunk.records, overrides)

    parallel = Parallel(n_jobs=workers, return_as="generator", pre_dispatch=f"{2 * workers}")
    for lines in parallel(tasks()):
        yield pending.pop(0), lines


def _run_dask(chunks: Iterator[Chunk], model_path: str, address: str,
              overrides: dict | None) -> Iterator[tuple[Chunk, list[str]]]:
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover
        raise TaggerError("--dask needs the dask extra: pip install 'mot-tagger[dask]'") from exc
    from tagger.classifier.registry import load_tagger

    tagger = load_tagger(model_path)
    _apply(tagger, overrides)
    with Client(address) as client:
        model_future = client.scatter(tagger, broadcast=True)  # workers need no shared filesystem
        window = max(2, 2 * len(client.scheduler_info().get("workers", {})))
        inflight: list[tuple[Chunk, Any]] = []
        for chunk in chunks:
            inflight.append((chunk, client.submit(classify_with_model, model_future, chunk.records, pure=False)))
            if len(inflight) >= window:
                done_chunk, fut = inflight.pop(0)
                yield done_chunk, fut.result()
        for done_chunk, fut in inflight:
            yield done_chunk, fut.result()


# -- from a helpdesk's API ------------------------------------------------------------------------------------
def backfill_helpdesk(adapter: Adapter, output: str | Path, model_path: str, *, client: httpx.Client,
                      since: float | None = None, resume: bool = False, store: Store | None = None,
                      settings: Settings | None = None, max_tickets: int | None = None,
                      overrides: dict | None = None, progress: Callable[[dict], None] | None = None,
                      sleep: Callable[[float], None] = time.sleep, attempts: int = 8,
                      base_delay_s: float = 2.0) -> dict[str, int]:
    """Page through `adapter`'s ticket history (`adapter.list_tickets`), classify every page and append it to
    `output` (JSONL). With a `store`, also queue each ticket's tags in the outbox for the worker to write
    (write-back), but only where that is safe: the ticket carries none of our tags yet (an agent's or an
    earlier run's labels are kept), the service has not classified it already, and the helpdesk still lets it
    be changed. Rate limits and outages are waited out (429 + Retry-After, else exponential backoff, up to
    `attempts` tries a page); a run stopped at any point continues with `resume=True` from the page after the
    last one written. Returns counts: tickets, skipped, pages, queued, kept."""
    from tagger.classifier.registry import load_tagger

    output = Path(output)
    checkpoint = output.with_name(output.name + ".progress.json")
    state = _helpdesk_state(output, checkpoint, {"helpdesk": adapter.name, "since": since}, resume)
    if state["finished"]:
        return _helpdesk_counts(state)
    tagger = load_tagger(model_path, **(overrides or {}))
    queue = _WriteBack(store, settings, adapter, tagger) if store is not None else None
    with open(output, "r+b" if output.exists() else "wb") as out:
        out.truncate(state["output_bytes"])
        out.seek(state["output_bytes"])
        while True:
            page = _fetch_page(adapter, client, state["cursor"], since, sleep=sleep, attempts=attempts,
                               base_delay_s=base_delay_s)
            _append_lines(out, _page_lines(page.messages, tagger, queue, state), state)
            _page_done(state, page)
            _save_state(checkpoint, state)
            if progress:
                progress(dict(state))
            if state["finished"] or (max_tickets and state["tickets"] >= max_tickets):
                break
    return _helpdesk_counts(state)


_HELPDESK_COUNTS = ("tickets", "skipped", "pages", "queued", "kept")


def _helpdesk_counts(state: dict[str, Any]) -> dict[str, int]:
    return {k: state[k] for k in _HELPDESK_COUNTS}


def _helpdesk_state(output: Path, checkpoint: Path, origin: dict[str, Any], resume: bool) -> dict[str, Any]:
    """Where a helpdesk backfill stands: its checkpoint when resuming (which must be of the same helpdesk and
    `since`, or the output would mix two runs), else a fresh start, refused over an output already written."""
    state: dict[str, Any] | None = None
    if resume and checkpoint.is_file():
        state = json.loads(checkpoint.read_text(encoding="utf-8"))
        if {k: state.get(k) for k in origin} != origin:
            raise TaggerError(f"{checkpoint} belongs to another backfill ({state.get('helpdesk')}, since "
                              f"{state.get('since')}); delete it or run without --resume")
    elif output.exists() and output.stat().st_size:
        raise TaggerError(f"{output} exists; use --resume to continue it or remove it")
    return state or {**origin, "cursor": None, "finished": False, "output_bytes": 0, "pages": 0, "tickets": 0,
                     "skipped": 0, "queued": 0, "kept": 0}


def _page_lines(messages, tagger: Tagger, queue: _WriteBack | None, state: dict[str, Any]) -> list[str]:
    """The output lines of one page of tickets, classified in one batch; with a write-back `queue`, each
    ticket's tags are offered to it and its answer ("queued" or "kept") counted in `state`."""
    predictions = tagger.predict_many([m.full_text for m in messages], [m.channel for m in messages])
    lines = []
    for message, prediction in zip(messages, predictions, strict=True):
        labels = prediction.to_dict()
        lines.append(json.dumps({
            "helpdesk": message.helpdesk, "ticket_id": message.ticket_id, "url": message.url,
            "updated_at": message.meta.get("updated_at") or None, "subject": message.subject,
            "text": message.text, "channel": message.channel, **labels}, ensure_ascii=False))
        if queue is not None:
            state[queue.add(message, prediction, labels)] += 1
    return lines


def _append_lines(out, lines: list[str], state: dict[str, Any]) -> None:
    """Append `lines` to the output and make them durable before the checkpoint counts them."""
    if not lines:
        return
    data = ("\n".join(lines) + "\n").encode("utf-8")
    out.write(data)
    out.flush()
    os.fsync(out.fileno())
    state["output_bytes"] += len(data)


def _page_done(state: dict[str, Any], page) -> None:
    """Count a written page in `state` and move its cursor to the next page (None: the history is done)."""
    state["pages"] += 1
    state["tickets"] += len(page.messages)
    state["skipped"] += page.skipped
    state["cursor"] = page.next_cursor
    state["finished"] = page.next_cursor is None


def _fetch_page(adapter: Adapter, client, cursor: str | None, since: float | None, *, sleep: Callable[[float], None],
                attempts: int, base_delay_s: float):
    from tagger.errors import HelpdeskError

    for attempt in range(1, attempts + 1):
        try:
            return adapter.list_tickets(client, cursor, since)
        except HelpdeskError as exc:
            if exc.permanent or attempt == attempts:
                raise TaggerError(f"{exc} (after {attempt} attempt{'s' if attempt > 1 else ''}; "
                                  "run again with --resume to continue from this page)") from exc
            delay = exc.retry_after if exc.retry_after is not None else base_delay_s * 2 ** (attempt - 1)
            delay = min(delay, 600.0)
            log.warning("%s; trying the page again in %.0f s", exc, delay)
            sleep(delay)
    raise AssertionError("unreachable")


class _WriteBack:
    """Queues a backfilled ticket's tags in the outbox, where that is safe (see `backfill_helpdesk`)."""

    def __init__(self, store: Store, settings: Settings, adapter: Adapter, tagger: Tagger):
        from tagger.service.ingest import own_tags

        self.store, self.adapter = store, adapter
        self.settings = settings
        self.own = own_tags(settings)
        self.version = str(tagger.metadata.get("version", "unversioned"))

    def add(self, message, prediction, labels: dict) -> str:
        from tagger.service.store import DuplicateEvent, text_hash

        if not message.meta.get("writable", True) or self.own & set(message.tags):
            return "kept"
        if self.store.last_message(message.helpdesk, message.ticket_id) is not None:
            return "kept"                     # the live service (or an earlier run) has classified it already
        from tagger.service.ingest import write_plan

        # the same write rule as the webhook path (a ticket nobody classified has no agent-owned labels)
        add, remove = write_plan(prediction.stage, prediction.sentiment, prediction.review, self.settings, {})
        try:
            self.store.record_classification(
                helpdesk=message.helpdesk, ticket_id=message.ticket_id, event_id=message.event_id,
                text_hash=text_hash(message.full_text), prediction=labels, channel=message.channel,
                model_version=self.version, add=add, remove=remove, ticket_url=message.url,
                text=message.full_text)
        except DuplicateEvent:
            return "kept"
        return "queued"


def count_lines(path: str | Path) -> int:
    """Lines in a file, counted in 1 MiB blocks (for the progress bar)."""
    n = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            n += block.count(b"\n")
    return n


__all__ = ["backfill", "backfill_helpdesk", "classify_records", "count_lines"]
