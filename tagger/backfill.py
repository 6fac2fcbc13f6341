"""Tagging a large export: streamed in chunks (never loaded whole), classified in parallel on local
cores (joblib) or on a Dask cluster, written in input order, resumable after an interruption.

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
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagger.errors import TaggerError

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
                    yield number, dict(row) if row.get("text") is not None else {"error": "missing text", "line": number}
        return
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            if number <= skip or not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                record = {"error": f"unreadable line: {type(exc).__name__}", "line": number}
            if isinstance(record, str):
                record = {"text": record}
            if not isinstance(record, dict) or (not isinstance(record.get("text"), str) and "error" not in record):
                record = {"error": "expected an object with a \"text\" string", "line": number}
            yield number, record


def _chunks(records: Iterable[tuple[int, dict]], size: int, start_index: int) -> Iterator[Chunk]:
    it = iter(records)
    for index in itertools.count(start_index):
        batch = list(itertools.islice(it, size))
        if not batch:
            return
        yield Chunk(index=index, last_line=batch[-1][0], records=[r for _n, r in batch])


def classify_records(model_path: str, records: list[dict], review_threshold: float | None = None) -> list[str]:
    """Classify one chunk in a worker (the model is loaded once per process and cached); returns the
    output lines."""
    tagger = _MODELS.get(model_path)
    if tagger is None:
        from tagger.registry import load_tagger

        tagger = _MODELS[model_path] = load_tagger(model_path)
    if review_threshold is not None:
        tagger.review_threshold = review_threshold
    good = [r for r in records if "error" not in r]
    preds = iter(tagger.predict_many([r["text"] for r in good], [r.get("channel") for r in good]))
    lines = []
    for r in records:
        if "error" not in r:
            r = {**r, **next(preds).to_dict()}
        lines.append(json.dumps(r, ensure_ascii=False))
    return lines


def classify_with_model(tagger, records: list[dict]) -> list[str]:
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
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**state, "source": self.fingerprint()}), encoding="utf-8")
        os.replace(tmp, self.path)


def backfill(source: str | Path, output: str | Path, model_path: str, *, workers: int = 1, chunk_size: int = 2000,
             resume: bool = False, dask_address: str | None = None, review_threshold: float | None = None,
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
        results = _run(chunks, model_path, workers, dask_address, review_threshold)
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
         review_threshold: float | None) -> Iterator[tuple[Chunk, list[str]]]:
    """Classify chunks in order: in this process, on local worker processes, or on a Dask cluster.
    At most a few chunks per worker are in flight, so memory stays bounded whatever the input size."""
    if dask_address:
        yield from _run_dask(chunks, model_path, dask_address, review_threshold)
        return
    if workers <= 1:
        for chunk in chunks:
            yield chunk, classify_records(model_path, chunk.records, review_threshold)
        return
    from joblib import Parallel, delayed

    pending: list[Chunk] = []

    def tasks():
        for chunk in chunks:
            pending.append(chunk)
            yield delayed(classify_records)(model_path, chunk.records, review_threshold)

    parallel = Parallel(n_jobs=workers, return_as="generator", pre_dispatch=f"{2 * workers}")
    for lines in parallel(tasks()):
        yield pending.pop(0), lines


def _run_dask(chunks: Iterator[Chunk], model_path: str, address: str,
              review_threshold: float | None) -> Iterator[tuple[Chunk, list[str]]]:
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover
        raise TaggerError("--dask needs the dask extra: pip install 'mot-tagger[dask]'") from exc
    from tagger.registry import load_tagger

    tagger = load_tagger(model_path)
    if review_threshold is not None:
        tagger.review_threshold = review_threshold
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


def count_lines(path: str | Path) -> int:
    """Lines in a file, counted in 1 MiB blocks (for the progress bar)."""
    n = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            n += block.count(b"\n")
    return n


__all__ = ["backfill", "classify_records", "count_lines"]
