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
from typing import Any

from tagger.errors import DataError
from tagger.labels import CHANNELS, SENTIMENTS, STAGES

HOLDOUT_EVERY = 4
REQUIRED = ("text", "stage", "sentiment")
# Sentiment-only records carry the mean of human ratings on -4..+4 (training_data/vader/) instead of labels.
# Clear means become labels; the ambiguous zone between, where raters disagree, is left out of training.
POLAR_RATING = 0.8
NEUTRAL_RATING = 0.3
_BATCH_NO = re.compile(r"_(\d+)$")


def sentiment_from_rating(rating: float) -> str | None:
    """The sentiment label of a mean human rating on -4..+4, or None inside the ambiguous zone."""
    if rating >= POLAR_RATING:
        return "positive"
    if rating <= -POLAR_RATING:
        return "negative"
    if abs(rating) <= NEUTRAL_RATING:
        return "neutral"
    return None


@dataclass(frozen=True)
class Example:
    text: str
    stage: str | None  # None: a sentiment-only example (human-rated real text has no journey stage)
    sentiment: str
    channel: str = "ticket"
    lang: str = ""
    source: str = ""   # file:line, for error messages and the batch split
    rating: float | None = None  # the mean human rating, for sentiment-only examples

    @property
    def batch(self) -> str:
        """The writing batch (the file) this example came from."""
        return self.source.rsplit(":", 1)[0]

    @property
    def origin(self) -> str:
        """The batch's file name without its number: `training_data/vader/vader_tweets_03.jsonl` -> `vader_tweets`."""
        return re.sub(r"_\d+$", "", Path(self.batch).stem)


def _validate(record: object, path: Path, line: int, *, labelled: bool) -> dict:
    if not isinstance(record, dict):
        raise DataError(path, line, f"expected a JSON object, got {type(record).__name__}")
    text = record.get("text")
    if not isinstance(text, str):
        raise DataError(path, line, "field 'text' is missing or not a string")
    if labelled and "rating" in record and "sentiment" not in record:
        rating = record["rating"]
        if isinstance(rating, bool) or not isinstance(rating, int | float) or not -4.0 <= rating <= 4.0:
            raise DataError(path, line, f"field 'rating' is {rating!r}; expected a number from -4 to 4")
        if not text.strip():
            raise DataError(path, line, "field 'text' is empty")
    elif labelled:
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


class LineError(ValueError):
    """One JSONL line that is not valid UTF-8 or not valid JSON; the message says which and where."""


def parse_line(raw: bytes) -> Any:
    """The JSON value of one JSONL line (None for a blank line): the one line reader of the training files,
    `tagger classify` and `tagger backfill`, so a bad line reads the same everywhere. LineError otherwise."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    if not line.strip():
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise LineError(f"not valid JSON: {exc.msg} (column {exc.colno})") from exc
    except RecursionError as exc:
        raise LineError("not valid here: JSON nested too deeply") from exc


def input_record(raw: bytes, number: int) -> dict | None:
    """One line of messages to classify -> a record with a "text" string (a bare JSON string is the text),
    an {"error", "line"} record saying what is wrong (so an output stays aligned with its input), or None
    for a blank line."""
    try:
        record = parse_line(raw)
    except LineError as exc:
        return {"error": str(exc), "line": number}
    if record is None:
        return None
    if isinstance(record, str):
        record = {"text": record}
    if not isinstance(record, dict):
        return {"error": "expected a JSON object with a \"text\" field", "line": number}
    if not isinstance(record.get("text"), str):
        return {"error": "missing \"text\" (a string)", "line": number, "input": record}
    return record


def iter_records(path: str | Path, *, labelled: bool = True) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each record of a JSONL or CSV file, validated."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "no such file")
    if path.suffix.lower() == ".csv":
        raw = path.read_bytes()
        try:  # utf-8-sig: a byte-order mark (as Excel writes one) is not part of the first column's name
            decoded = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DataError(path, raw[:exc.start].count(b"\n") + 1,
                            f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
        reader = csv.DictReader(io.StringIO(decoded, newline=""))
        try:
            missing = [c for c in (REQUIRED if labelled else ("text",)) if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(path, 1, f"CSV header lacks column(s): {', '.join(missing)}")
            for row in reader:
                yield reader.line_num, _validate(dict(row), path, reader.line_num, labelled=labelled)
        except csv.Error as exc:
            raise DataError(path, reader.line_num, f"not valid CSV: {exc}") from exc
        return
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                record = parse_line(raw)
            except LineError as exc:
                raise DataError(path, number, str(exc)) from exc
            if record is not None:
                yield number, _validate(record, path, number, labelled=labelled)


def read_examples(path: str | Path) -> list[Example]:
    """All labelled examples of one file. Rated records (`rating`, no labels) become sentiment-only
    examples; those in the ambiguous rating zone are skipped."""
    out = []
    seen_any = False
    for n, r in iter_records(path, labelled=True):
        seen_any = True
        common = {"text": r["text"], "channel": r.get("channel") or "ticket", "lang": r.get("lang") or "",
                  "source": f"{path}:{n}"}
        if "sentiment" in r:
            out.append(Example(stage=r["stage"], sentiment=r["sentiment"], **common))
        elif (label := sentiment_from_rating(float(r["rating"]))) is not None:
            out.append(Example(stage=None, sentiment=label, rating=float(r["rating"]), **common))
    if not seen_any:
        raise DataError(path, None, "no records: the file is empty")
    return out


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
    """A Markdown table of counts per language, stage and sentiment (for training_data/README.md), of the
    corpus (messages with both labels; the human-rated real text is counted by `rated_counts`)."""
    examples = [e for e in examples if e.stage is not None]
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


def rated_counts(train: list[Example], test: list[Example]) -> str:
    """A Markdown table of the human-rated, sentiment-only examples per source and split."""
    rows = Counter((e.origin, "train", e.sentiment) for e in train if e.stage is None)
    rows += Counter((e.origin, "held-out", e.sentiment) for e in test if e.stage is None)
    out = io.StringIO()
    out.write("| source | split | positive | neutral | negative |\n|---|---|---:|---:|---:|\n")
    for src in sorted({k[0] for k in rows}):
        for split in ("train", "held-out"):
            out.write(f"| {src} | {split} | " + " | ".join(str(rows[(src, split, s)]) for s in SENTIMENTS) + " |\n")
    return out.getvalue()


COUNTS_START, COUNTS_END = "<!-- COUNTS:START (tagger data counts --write) -->", "<!-- COUNTS:END -->"


def counts_report(train: list[Example], test: list[Example]) -> str:
    """The counts section of training_data/README.md: all messages, the held-out split, the rated text."""
    return ("All messages:\n\n" + counts_table(train + test)
            + "\nHeld-out split (never trained on):\n\n" + counts_table(test)
            + "\nHuman-rated real text (sentiment only, `vader/`):\n\n" + rated_counts(train, test))


def write_counts(readme: str | Path, text: str) -> None:
    """Replace what stands between the COUNTS markers of `readme` with `text`."""
    path = Path(readme)
    body = path.read_text(encoding="utf-8")
    if COUNTS_START not in body or COUNTS_END not in body:
        raise DataError(path, None, f"no {COUNTS_START} ... {COUNTS_END} markers")
    head, rest = body.split(COUNTS_START, 1)
    path.write_text(head + COUNTS_START + "\n" + text + rest[rest.index(COUNTS_END):], encoding="utf-8")
