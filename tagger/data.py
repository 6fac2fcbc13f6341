"""Reading and validating labelled data (JSONL or CSV). Every error names the file and the line.

The corpus lives in `training_data/<lang>/<lang>_<NN>.jsonl`; each file is one writing batch.
The held-out split is made by whole files (batches), so near-duplicates written together never
straddle train and test: files whose batch number is a multiple of `HOLDOUT_EVERY` are held out.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tagger.errors import DataError
from tagger.labels import CHANNELS, SENTIMENTS, STAGES

HOLDOUT_EVERY = 4
REQUIRED = ("text", "stage", "sentiment")
_BATCH_NO = re.compile(r"_(\d+)$")


@dataclass(frozen=True)
class Example:
    text: str
    stage: str
    sentiment: str
    channel: str = "ticket"
    lang: str = ""
    source: str = ""   # file:line, for error messages and the batch split

    @property
    def batch(self) -> str:
        """The writing batch (the file) this example came from."""
        return self.source.rsplit(":", 1)[0]


def _validate(record: object, path: Path, line: int, *, labelled: bool) -> dict:
    if not isinstance(record, dict):
        raise DataError(path, line, f"expected a JSON object, got {type(record).__name__}")
    text = record.get("text")
    if not isinstance(text, str):
        raise DataError(path, line, "field 'text' is missing or not a string")
    if labelled:
        for name, allowed in (("stage", STAGES), ("sentiment", SENTIMENTS)):
            value = record.get(name)
            if value not in allowed:
                raise DataError(path, line, f"field '{name}' is {value!r}; expected one of {', '.join(allowed)}")
        if not text.strip():
            raise DataError(path, line, "field 'text' is empty")
    channel = record.get("channel") or "ticket"
    if channel not in CHANNELS:
        raise DataError(path, line, f"field 'channel' is {channel!r}; expected one of {', '.join(CHANNELS)}")
    return record


def iter_records(path: str | Path, *, labelled: bool = True) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each record of a JSONL or CSV file, validated."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "no such file")
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in (REQUIRED if labelled else ("text",)) if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(path, 1, f"CSV header lacks column(s): {', '.join(missing)}")
            for row in reader:
                yield reader.line_num, _validate(dict(row), path, reader.line_num, labelled=labelled)
        return
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(path, number, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, number, f"not valid JSON: {exc.msg} (column {exc.colno})") from exc
            yield number, _validate(record, path, number, labelled=labelled)


def read_examples(path: str | Path) -> list[Example]:
    """All labelled examples of one file."""
    return [
        Example(text=r["text"], stage=r["stage"], sentiment=r["sentiment"], channel=r.get("channel") or "ticket",
                lang=r.get("lang") or "", source=f"{path}:{n}")
        for n, r in iter_records(path, labelled=True)
    ]


def corpus_files(data_dir: str | Path) -> list[Path]:
    """The corpus files, in a stable order."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(root, None, "training data folder does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jsonl", ".csv") and p.is_file())
    if not files:
        raise DataError(root, None, "no .jsonl or .csv files found")
    return files


def is_holdout(path: str | Path) -> bool:
    """True for files of the held-out split (batch number a multiple of HOLDOUT_EVERY)."""
    match = _BATCH_NO.search(Path(path).stem)
    return bool(match) and int(match.group(1)) % HOLDOUT_EVERY == 0


def load_corpus(data_dir: str | Path, extra: Iterable[str | Path] = ()) -> tuple[list[Example], list[Example]]:
    """(train, held-out) examples of the corpus; extra files always go to train."""
    train: list[Example] = []
    test: list[Example] = []
    for path in corpus_files(data_dir):
        (test if is_holdout(path) else train).extend(read_examples(path))
    for path in extra:
        train.extend(read_examples(path))
    return train, test


def data_hash(examples: Iterable[Example]) -> str:
    """SHA-256 over the labelled content (not file names), so a model can name exactly what it learned from."""
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps([ex.text, ex.stage, ex.sentiment, ex.channel, ex.lang],
                                 ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def counts_table(examples: list[Example]) -> str:
    """A Markdown table of counts per language, stage and sentiment (for training_data/README.md)."""
    langs = sorted({e.lang for e in examples})
    by = Counter((e.lang, e.stage) for e in examples) + Counter((e.lang, e.sentiment) for e in examples)
    total = Counter(e.lang for e in examples)
    cols = list(STAGES) + list(SENTIMENTS)
    out = io.StringIO()
    out.write("| lang | total | " + " | ".join(cols) + " |\n")
    out.write("|---|---:|" + "---:|" * len(cols) + "\n")
    for lang in langs:
        out.write(f"| {lang} | {total[lang]} | " + " | ".join(str(by[(lang, c)]) for c in cols) + " |\n")
    all_counts = Counter(e.stage for e in examples) + Counter(e.sentiment for e in examples)
    out.write(f"| **all** | {len(examples)} | " + " | ".join(str(all_counts[c]) for c in cols) + " |\n")
    return out.getvalue()
