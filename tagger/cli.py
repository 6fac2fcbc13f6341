"""The `tagger` command line: a thin layer over the library (tagger.model, data, registry, evaluate)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from tagger.config import Settings
from tagger.errors import TaggerError

pass_settings = click.make_pass_decorator(Settings)


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc)) from exc


class _Group(click.Group):
    """Turns every TaggerError into a one-line error message instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TaggerError as exc:
            _fail(exc)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mot-tagger")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """MOT Tagger: moment-of-truth stage and sentiment for helpdesk messages.

    \b
    Example:
      echo '{"text":"Where is my parcel?"}' | tagger classify
    """
    ctx.obj = Settings.load()


# --------------------------------------------------------------------------------------------------- train
@cli.command()
@click.argument("extra", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--data", "data_dir", type=click.Path(file_okay=False), help="Corpus folder (default: training_data/).")
@click.option("--models", "models_dir", type=click.Path(file_okay=False), help="Model folder (default: models/).")
@click.option("--no-holdout", is_flag=True, help="Train on every file, held-out batches too (no metrics then).")
@click.option("--feedback", is_flag=True, help="Add the agents' corrections from the store to the training data.")
@click.option("--activate/--no-activate", default=True, show_default=True,
              help="Make the new version the active one (refused if macro-F1 drops too much).")
@click.option("--force", is_flag=True, help="Activate even if macro-F1 dropped by more than the allowed margin.")
@click.option("--seed", default=0, show_default=True, help="random_state for reproducible training.")
@pass_settings
def train(settings: Settings, extra, data_dir, models_dir, no_holdout, feedback, activate, force, seed) -> None:
    """Train both tasks and save a new model version.

    Trains on training_data/ (plus any EXTRA JSONL/CSV files), evaluates on the held-out
    batches, and writes models/<version>/ with its metrics and SHA-256.

    \b
    Examples:
      tagger train
      tagger train my_labelled.jsonl --no-activate
      tagger train --feedback          # include agents' tag corrections
    """
    from tagger.evaluate import format_report
    from tagger.training import train_version

    started = time.perf_counter()

    def say(msg: str) -> None:
        click.echo(f"[{time.perf_counter() - started:6.1f}s] {msg}", err=True)

    result = train_version(settings, extra=extra, data_dir=data_dir, models_dir=models_dir, no_holdout=no_holdout,
                           feedback=feedback, activate=activate, force=force, seed=seed, progress=say)
    if result.metrics:
        click.echo(format_report(result.metrics), err=True)
        click.echo("\n== fast path (n-grams only)\n" + format_report(result.metrics["fast_path"]), err=True)
    if result.review_threshold is not None:
        say(f"review threshold {result.review_threshold} (lowest with >= 90% both-right among untagged, held-out)")
    if activate and not result.activated:
        say(f"not activated: {result.activation_error}")
        sys.exit(3)
    click.echo(result.version)


# ------------------------------------------------------------------------------------------------ evaluate
@cli.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "model_path", help="Model version or folder (default: the active model).")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Draw the review tag's coverage/accuracy curve (one point per threshold) into this PNG.")
@click.option("--confusion", type=click.Path(dir_okay=False), help="Draw both confusion matrices into this PNG.")
@click.option("--fast", is_flag=True, help="Evaluate the fast path (n-grams only, no encoder).")
@click.option("--threshold", type=float, help="Review threshold (default: the model's, chosen at training).")
@click.option("--compare", nargs=2, metavar="OLD NEW", help="Evaluate two model versions side by side.")
@pass_settings
def evaluate(settings: Settings, files, model_path, as_json, plot, confusion, fast, threshold, compare) -> None:
    """Precision/recall/F1 per class, macro-F1, accuracy per language, confusion matrices, real-text
    sentiment by source, and the review tag's coverage/accuracy table.

    Without FILES it evaluates the held-out split of training_data/ (never used for training): the
    corpus' held-out batches and the held-out files of the human-rated real text (training_data/vader).

    \b
    Examples:
      tagger evaluate
      tagger evaluate --fast
      tagger evaluate tickets_labelled.jsonl --json
      tagger evaluate --compare v20261101-120000-ab12cd34 v20261123-090000-ef56ab78
      tagger evaluate --plot coverage.png --confusion confusion.png
    """
    from tagger import data as data_mod
    from tagger.evaluate import compare as compare_reports
    from tagger.evaluate import evaluate as run_eval
    from tagger.evaluate import format_report, plot_confusion, plot_coverage
    from tagger.registry import Registry, load_tagger

    if files:
        examples = [ex for f in files for ex in data_mod.read_examples(f)]
    else:
        examples = data_mod.load_corpus(settings.data_dir)[1]
    if not examples:
        raise click.ClickException("nothing to evaluate: no labelled messages")
    if compare:
        registry = Registry(settings.models_dir)
        old, new = (run_eval(registry.load(v), examples) for v in compare)
        click.echo(json.dumps({"old": old, "new": new}, indent=2) if as_json else compare_reports(old, new))
        return
    tagger = load_tagger(_model_path(settings, model_path), review_threshold=threshold, fast=fast or None)
    report = run_eval(tagger, examples)
    report["model"] = tagger.metadata.get("version")
    click.echo(json.dumps(report, indent=2, ensure_ascii=False) if as_json else format_report(report))
    for path, draw in ((plot, plot_coverage), (confusion, plot_confusion)):
        if path and report["n"]:
            draw(report, path)
            click.echo(f"wrote {path}", err=True)


def _overrides(settings: Settings) -> dict:
    """What settings change in a loaded model (None keeps the model's own)."""
    return {"review_threshold": settings.review_threshold, "fast": settings.fast_model or None}


def _model_path(settings: Settings, model: str | None) -> str:
    if not model:
        return str(Path(settings.models_dir) / "current")
    if Path(model).exists():
        return model
    return str(Path(settings.models_dir) / model)


# ------------------------------------------------------------------------------------------------ classify
@cli.command()
@click.argument("text", required=False)
@click.option("--input", "input_file", type=click.File("rb"), help="JSONL file (default: stdin when no TEXT).")
@click.option("--channel", type=click.Choice(["ticket", "chat", "social"]), help="Channel of TEXT.")
@click.option("--explain", is_flag=True, help="Add the terms that drove each label.")
@click.option("--model", "model_path", help="Model version or folder (default: the active model).")
@click.option("--threshold", type=float, help="Review threshold (default: TAGGER_REVIEW_THRESHOLD, else the model's).")
@click.option("--fast", is_flag=True, default=None,
              help="n-grams only, no encoder: ~100x faster, less accurate (default: TAGGER_FAST_MODEL).")
@click.option("--batch-size", default=1000, show_default=True, hidden=True)
@pass_settings
def classify(settings: Settings, text, input_file, channel, explain, model_path, threshold, fast, batch_size) -> None:
    """Classify one message (TEXT) or many (JSONL on stdin or --input), printing JSONL.

    Each input line is a JSON object with at least "text" (other fields are kept); a bare
    JSON string is taken as the text. Output adds stage, stage_confidence, sentiment,
    sentiment_confidence, lang, review and tags (and explain with --explain). A line that
    cannot be read gives {"error": ..., "line": N} in its place, and the exit code is 1.

    \b
    Examples:
      tagger classify "Mans pasūtījums vēl nav atnācis, jau 2 nedēļas!"
      echo '{"id": 7, "text": "Coupon fails at checkout", "channel": "chat"}' | tagger classify
      tagger classify --input tickets.jsonl --explain > tagged.jsonl
      tagger classify --fast --input huge.jsonl > tagged.jsonl
    """
    from tagger.data import input_record
    from tagger.registry import load_tagger

    tagger = load_tagger(_model_path(settings, model_path),
                         review_threshold=threshold if threshold is not None else settings.review_threshold,
                         fast=fast or settings.fast_model or None,
                         stage_prefix=settings.stage_tag_prefix, sentiment_prefix=settings.sentiment_tag_prefix)
    out = sys.stdout

    def emit(records: list[dict]) -> None:
        good = [r for r in records if "error" not in r]
        preds = tagger.predict_many([r["text"] for r in good], [r.get("channel") for r in good], explain=explain)
        it = iter(preds)
        for r in records:
            if "error" not in r:
                r.update(next(it).to_dict())
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
        out.flush()

    if text is not None:
        emit([{"text": text, **({"channel": channel} if channel else {})}])
        return
    stream = input_file or sys.stdin.buffer
    failed = 0
    batch: list[dict] = []
    for number, raw in enumerate(stream, 1):
        record = input_record(raw, number)
        if record is None:
            continue
        failed += "error" in record
        batch.append(record)
        if len(batch) >= batch_size:
            emit(batch)
            batch = []
    if batch:
        emit(batch)
    if failed:
        click.echo(f"{failed} line(s) could not be read", err=True)
        sys.exit(1)


# -------------------------------------------------------------------------------------------------- models
@cli.group()
def models() -> None:
    """List, inspect, activate and roll back model versions.

    \b
    Examples:
      tagger models list
      tagger models show v20261123-101500-1a2b3c4d
      tagger models activate v20261123-101500-1a2b3c4d
      tagger models rollback
      tagger models convert v20261123-023642-19b64205   # a pickled version from before 2026-12
    """


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def models_list(settings: Settings, as_json: bool) -> None:
    """Every version with its date, held-out macro-F1 and data hash; * marks the active one.

    \b
    Example:
      tagger models list
    """
    from tagger.registry import Registry

    rows = Registry(settings.models_dir).summary()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"  {'version':<30}{'created':<27}{'stage F1':>9}{'sent. F1':>9}{'train':>7}  data")
    for r in rows:
        f = lambda x: f"{x:.3f}" if isinstance(x, float) else "-"  # noqa: E731
        click.echo(f"{'*' if r['active'] else ' '} {r['version']:<30}{r['created'] or '':<27}"
                   f"{f(r['stage_macro_f1']):>9}{f(r['sentiment_macro_f1']):>9}{r['n_train'] or 0:>7}  {r['data_hash']}")


@models.command("show")
@click.argument("version", required=False)
@pass_settings
def models_show(settings: Settings, version: str | None) -> None:
    """The full metadata of one version (default: the active one).

    \b
    Example:
      tagger models show
    """
    from tagger.registry import Registry

    registry = Registry(settings.models_dir)
    click.echo(json.dumps(registry.metadata(version or registry.current()), indent=2, ensure_ascii=False))


@models.command("activate")
@click.argument("version")
@click.option("--force", is_flag=True, help="Activate even if macro-F1 dropped more than allowed.")
@pass_settings
def models_activate(settings: Settings, version: str, force: bool) -> None:
    """Make VERSION the active model; a running `tagger serve` picks it up without a restart.

    Both the current and the new model are evaluated on the held-out split first; activation is
    refused when macro-F1 drops by more than TAGGER_ACTIVATION_MAX_DROP (default 0.02), unless --force.
    --force skips that guard only: VERSION must be a version of the models folder whose files pass
    their SHA-256 (and signature) checks.

    \b
    Example:
      tagger models activate v20261123-101500-1a2b3c4d
    """
    from tagger.data import load_corpus
    from tagger.registry import Registry
    from tagger.training import activate_version

    heldout = None if force else load_corpus(settings.data_dir)[1]
    activate_version(Registry(settings.models_dir), version, force=force, max_drop=settings.activation_max_drop,
                     heldout=heldout)
    click.echo(f"active: {version}")


@models.command("convert")
@click.argument("version")
@pass_settings
def models_convert(settings: Settings, version: str) -> None:
    """Rewrite VERSION, saved as a pickle by a release before 2026-12, in the code-free format.

    Pickles run code when loaded, so the service refuses them; convert only a version you trust
    (its SHA-256 is checked first). With TAGGER_MODEL_KEY set, the converted version is signed.

    \b
    Example:
      tagger models convert v20261123-023642-19b64205
    """
    from tagger.registry import Registry

    Registry(settings.models_dir).convert(version)
    click.echo(f"converted: {version}")


@models.command("sign")
@click.argument("versions", nargs=-1, required=True)
@pass_settings
def models_sign(settings: Settings, versions: tuple[str, ...]) -> None:
    """Sign VERSIONS with TAGGER_MODEL_KEY (their hashes are checked first).

    With TAGGER_MODEL_KEY set, `tagger train` signs what it saves and every load refuses an unsigned
    or wrongly signed version; this vouches for versions saved before the key was set.

    \b
    Example:
      TAGGER_MODEL_KEY=... tagger models sign v20261203-102234-f94bc8c8
    """
    from tagger.registry import Registry

    registry = Registry(settings.models_dir)
    for version in versions:
        registry.sign_version(version)
        click.echo(f"signed: {version}")


@models.command("rollback")
@pass_settings
def models_rollback(settings: Settings) -> None:
    """Re-activate the version that was active before the current one.

    \b
    Example:
      tagger models rollback
    """
    from tagger.registry import Registry

    click.echo(f"active: {Registry(settings.models_dir).rollback()}")


# -------------------------------------------------------------------------------------------- team leads
@cli.command()
@click.option("--stage", type=click.Choice(["lzmot", "zmot", "fmot", "smot", "umot"]))
@click.option("--sentiment", type=click.Choice(["positive", "neutral", "negative"]))
@click.option("--lang", help="Detected language, e.g. lv.")
@click.option("--channel", type=click.Choice(["ticket", "chat", "social"]))
@click.option("--helpdesk", help="e.g. zendesk, freshdesk, zammad.")
@click.option("--min-confidence", type=float, help="Both confidences at least this.")
@click.option("--max-confidence", type=float, help="Either confidence at most this (the doubtful ones).")
@click.option("--since", help="2026-11-01, 2026-11-01T08:00, or back from now: 24h, 7d, 4w.")
@click.option("--until", help="Same forms as --since (exclusive).")
@click.option("--limit", default=50, show_default=True, help="At most this many rows (0: all).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--db", help="Store URL (default: TAGGER_DB_URL or sqlite:///tagger.db).")
@pass_settings
def tickets(settings: Settings, stage, sentiment, lang, channel, helpdesk, min_confidence, max_confidence,
            since, until, limit, fmt, db) -> None:
    """List tagged messages from the store, newest first, with a link to each ticket.

    \b
    Examples:
      tagger tickets --stage smot --sentiment negative --since 7d
      tagger tickets --max-confidence 0.5 --format csv > doubtful.csv
      tagger tickets --lang lv --helpdesk zendesk --format json
    """
    from tagger.reports import format_tickets, parse_when
    from tagger.store import Store

    store = Store(db or settings.db_url)
    try:
        rows = store.list_messages(stage=stage, sentiment=sentiment, lang=lang, channel=channel, helpdesk=helpdesk,
                                   min_confidence=min_confidence, max_confidence=max_confidence,
                                   since=parse_when(since), until=parse_when(until), limit=limit or None)
    finally:
        store.close()
    click.echo(format_tickets(rows, fmt), nl=False)


@cli.command()
@click.option("--period", default="7d", show_default=True, help="Length of the period: 24h, 7d, 4w, 3m.")
@click.option("--until", help="End of the period (default: now); 2026-11-01 or 2026-11-01T08:00.")
@click.option("--helpdesk")
@click.option("--channel", type=click.Choice(["ticket", "chat", "social"]))
@click.option("--lang")
@click.option("--json", "as_json", is_flag=True)
@click.option("--db", help="Store URL (default: TAGGER_DB_URL or sqlite:///tagger.db).")
@pass_settings
def report(settings: Settings, period, until, helpdesk, channel, lang, as_json, db) -> None:
    """Counts of stage by sentiment over a period, with the trend against the period before.

    \b
    Examples:
      tagger report                      # the last 7 days against the 7 before
      tagger report --period 4w --channel social
      tagger report --period 1m --until 2026-11-01 --json
    """
    from tagger.reports import build_report, format_report, parse_period, parse_when
    from tagger.store import Store

    store = Store(db or settings.db_url)
    try:
        data = build_report(store, period=parse_period(period), until=parse_when(until), helpdesk=helpdesk,
                            channel=channel, lang=lang)
    finally:
        store.close()
    click.echo(json.dumps(data, indent=2) if as_json else format_report(data), nl=not as_json)


# ------------------------------------------------------------------------------------------------ backfill
@cli.command()
@click.argument("source", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="JSONL file to write.")
@click.option("--helpdesk", metavar="NAME",
              help="Page through this helpdesk's ticket API instead of reading SOURCE (every built-in helpdesk "
                   "with a listing API: zendesk, freshdesk, helpscout, djangohelpdesk, zammad, chatwoot, "
                   "liveagent; credentials from TAGGER_<NAME>_* as for `tagger serve`).")
@click.option("--since", metavar="DATE", help="With --helpdesk: only tickets changed since DATE (2024-01-31, "
                                               "ISO 8601, or back from now: 30d, 12w); default: the whole history.")
@click.option("--write-back", is_flag=True,
              help="With --helpdesk: also queue the tags in the store's outbox; `tagger serve` or `tagger "
                   "worker` writes them (rate limits honoured). Tickets that already carry our tags, or that "
                   "the service classified already, are left alone.")
@click.option("--max-tickets", type=click.IntRange(min=1), help="With --helpdesk: stop after about this many "
                                                                 "tickets (a trial run); --resume continues.")
@click.option("--db", "db_url", metavar="URL", help="With --write-back: the store (default: TAGGER_DB_URL).")
@click.option("--workers", "-j", default=1, show_default=True, help="Local worker processes (joblib).")
@click.option("--dask", "dask_address", metavar="tcp://HOST:8786", help="Run on this Dask cluster instead.")
@click.option("--chunk-size", default=2000, show_default=True, help="Messages per unit of work.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its checkpoint.")
@click.option("--model", "model_path", help="Model version or folder (default: the active model).")
@pass_settings
def backfill(settings: Settings, source, output, helpdesk, since, write_back, max_tickets, db_url, workers,
             dask_address, chunk_size, resume, model_path) -> None:
    """Tag your history: a large JSONL or CSV export, or a helpdesk's ticket API.

    Output lines keep the input fields (or the ticket's id, link, subject and text) and add the labels,
    in order. Interrupt it at any point and run it again with --resume: nothing is lost or written twice.

    \b
    Examples:
      tagger backfill tickets_2019_2025.jsonl -o tagged.jsonl -j 2
      tagger backfill tickets.csv -o tagged.jsonl --resume
      tagger backfill huge.jsonl -o tagged.jsonl --dask tcp://scheduler:8786
      tagger backfill --helpdesk zendesk --since 2025-01-01 -o zendesk.jsonl
      tagger backfill --helpdesk freshdesk -o fd.jsonl --write-back --resume
    """
    if helpdesk:
        if source:
            raise click.UsageError("give SOURCE or --helpdesk, not both")
        _backfill_helpdesk(settings, helpdesk, output, since, write_back, max_tickets, db_url, resume, model_path)
        return
    if not source:
        raise click.UsageError("give an export file (SOURCE) or --helpdesk NAME")
    if since or write_back or max_tickets:
        raise click.UsageError("--since, --write-back and --max-tickets go with --helpdesk")
    from tagger.backfill import backfill as run_backfill
    from tagger.backfill import count_lines

    total = count_lines(source)
    with click.progressbar(length=total, label="tagging", file=sys.stderr, show_pos=True,
                           show_eta=True) as bar:
        def progress(_n: int, done: int) -> None:
            bar.update(done - bar.pos)

        counts = run_backfill(source, output, _model_path(settings, model_path), workers=workers,
                              chunk_size=chunk_size, resume=resume, dask_address=dask_address,
                              overrides=_overrides(settings), progress=progress)
    click.echo(json.dumps(counts))


def _since(value: str | None) -> float | None:
    """`--since` of a helpdesk backfill as epoch seconds, read like every other time option (reports.parse_when)."""
    from tagger.reports import parse_when

    try:
        when = parse_when(value)
    except TaggerError as exc:
        raise click.BadParameter(f"{value!r} is not a date or look-back ({exc})", param_hint="--since") from exc
    return None if when is None else when.timestamp()


def _backfill_helpdesk(settings: Settings, name, output, since, write_back, max_tickets, db_url, resume,
                       model_path) -> None:
    import dataclasses
    import os

    import httpx

    from tagger.backfill import backfill_helpdesk
    from tagger.helpdesks import get_adapter

    adapter = get_adapter(name, os.environ, settings=settings)
    store = None
    if write_back:
        from tagger.store import Store

        if db_url:
            settings = dataclasses.replace(settings, db_url=db_url)
        store = Store(settings.db_url)
    started = time.monotonic()

    def progress(state: dict) -> None:
        rate = state["tickets"] / max(1e-9, time.monotonic() - started)
        queued = f", {state['queued']:,} queued for write-back, {state['kept']:,} left as they are" if store else ""
        click.echo(f"\rpage {state['pages']:,}: {state['tickets']:,} tickets tagged ({rate:,.0f}/s), "
                   f"{state['skipped']:,} without text{queued}", file=sys.stderr, nl=False)

    with httpx.Client(timeout=settings.http_timeout_s, follow_redirects=False) as client:
        try:
            counts = backfill_helpdesk(adapter, output, _model_path(settings, model_path), client=client,
                                       since=_since(since), resume=resume, store=store, settings=settings,
                                       max_tickets=max_tickets, overrides=_overrides(settings),
                                       progress=progress)
        finally:
            click.echo("", file=sys.stderr)
            if store is not None:
                store.close()
    click.echo(json.dumps(counts))


# ---------------------------------------------------------------------------------------------------- data
@cli.group()
def data() -> None:
    """Check and describe the labelled corpus."""


@data.command("check")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@pass_settings
def data_check(settings: Settings, paths) -> None:
    """Validate corpus files; the first error names the file and the line.

    \b
    Example:
      tagger data check training_data/lv/lv_03.jsonl
    """
    from tagger import data as data_mod

    files = [Path(p) for p in paths if Path(p).is_file()]
    for p in paths or [settings.data_dir]:
        if Path(p).is_dir():
            files += data_mod.corpus_files(p)
    n = sum(len(data_mod.read_examples(f)) for f in files)
    click.echo(f"ok: {n} messages in {len(files)} files")


@data.command("counts")
@click.option("--write", "readme", type=click.Path(dir_okay=False),
              help="Replace the counts section of this README (between the COUNTS markers).")
@pass_settings
def data_counts(settings: Settings, readme: str | None) -> None:
    """Counts per language, stage and sentiment, for the whole corpus and the held-out split.

    \b
    Example:
      tagger data counts --write training_data/README.md
    """
    from tagger import data as data_mod

    text = data_mod.counts_report(*data_mod.load_corpus(settings.data_dir))
    if not readme:
        click.echo(text)
        return
    data_mod.write_counts(readme, text)
    click.echo(f"updated {readme}")




from tagger.cli_service import register as _register_service  # noqa: E402  (service commands: tagger/cli_service.py)

_register_service(cli)

if __name__ == "__main__":  # pragma: no cover
    cli()
