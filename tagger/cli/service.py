"""The service commands: serve, worker, outbox, feedback, prune, db, setup, doctor (a thin layer over
tagger.service.app, tagger.service.worker, tagger.service.store and tagger.helpdesks)."""
from __future__ import annotations

import json
import signal
import threading

import click

from tagger.cli.common import (
    adapter_option,
    db_option,
    fail,
    json_option,
    log_option,
    open_store,
    settings_of,
    setup_logging,
)
from tagger.config import Settings
from tagger.errors import TaggerError


# ----------------------------------------------------------------------------------------------------- serve
@click.command()
@click.option("--host", help="Interface to listen on (default: TAGGER_HOST or 127.0.0.1).")
@click.option("--port", type=int, help="Port (default: TAGGER_PORT or 8080).")
@db_option
@click.option("--models", "models_dir", type=click.Path(file_okay=False),
              help="Model folder; its active version is served and reloaded on activation (default: models/).")
@click.option("--no-worker", is_flag=True, help="Do not write tags from this process (run `tagger worker` instead).")
@adapter_option
@log_option
@click.pass_context
def serve(ctx, host, port, db_url, models_dir, no_worker, adapters, log_level) -> None:
    """Run the webhook service (and, unless --no-worker, the tag write-back worker).

    Helpdesks post to http://HOST:PORT/webhooks/<helpdesk>; /healthz and /metrics are for
    monitoring. Activating a new model (`tagger models activate`) takes effect without a restart.

    \b
    Examples:
      tagger serve
      tagger serve --host 0.0.0.0 --port 9000 --db postgresql+psycopg://tagger@db/tagger
      tagger serve --no-worker          # and `tagger worker` elsewhere
    """
    import uvicorn

    from tagger.service.app import create_app

    settings = settings_of(ctx, host=host, port=port, db_url=db_url, models_dir=models_dir)
    setup_logging(log_level)
    try:
        app = create_app(settings, extra_adapters=tuple(adapters), run_worker=not no_worker)
    except TaggerError as exc:
        fail(exc)
    _prepare_helpdesks(app.state.service.adapters, settings)
    click.echo(f"tagger serving on http://{settings.host}:{settings.port} "
               f"(model {app.state.service.models.version}, worker {'off' if no_worker else 'on'})", err=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level, timeout_graceful_shutdown=10,
                server_header=False)


def _prepare_helpdesks(adapters, settings: Settings) -> None:
    """Print what the start-up preparation of the helpdesks did (tagger.service.setup.prepare_all)."""
    import httpx

    from tagger.service.setup import prepare_all

    with httpx.Client(timeout=settings.http_timeout_s, follow_redirects=False) as client:
        for name, step in prepare_all(adapters, client):
            if step.action in ("created", "warning"):
                click.echo(f"{'warning: ' if step.action == 'warning' else ''}{name}: {step.action} {step.what}"
                           + (f" ({step.detail})" if step.detail else ""), err=True)


# ---------------------------------------------------------------------------------------------------- worker
@click.command()
@db_option
@click.option("--once", is_flag=True, help="Write everything that is due now, then exit.")
@click.option("--concurrency", type=click.IntRange(min=1),
              help="Tag writes in flight at once (default: TAGGER_WORKER_CONCURRENCY or 8).")
@adapter_option
@log_option
@click.pass_context
def worker(ctx, db_url, once, concurrency, adapters, log_level) -> None:
    """Write queued tags to the helpdesks (the outbox worker), until SIGINT/SIGTERM.

    Several workers (on several machines) can share one PostgreSQL database safely.

    \b
    Examples:
      tagger worker
      tagger worker --db postgresql+psycopg://tagger@db/tagger --concurrency 16
      tagger worker --once
    """
    from tagger.helpdesks import load_adapters
    from tagger.service.worker import Worker

    settings = settings_of(ctx, db_url=db_url)
    setup_logging(log_level)
    try:
        loaded, errors = load_adapters(adapters, settings=settings)
        if not loaded:
            for name, reason in errors.items():
                click.echo(f"warning: helpdesk {name} not configured: {reason}", err=True)
        runner = Worker(open_store(settings), loaded, settings, concurrency=concurrency)
    except TaggerError as exc:
        fail(exc)
    if once:
        n = runner.drain(timeout_s=3600)
        runner.stop()
        click.echo(f"attempted {n} tag write(s)")
        return
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    runner.start()
    click.echo(f"tagger worker running (helpdesks: {', '.join(sorted(loaded)) or 'none'}); Ctrl-C stops", err=True)
    stopped.wait()
    click.echo("finishing writes in flight...", err=True)
    runner.stop()


# ---------------------------------------------------------------------------------------------------- outbox
@click.group(invoke_without_command=True)
@click.option("--status", type=click.Choice(["pending", "done", "dead"]), help="Only rows with this status.")
@click.option("--limit", default=50, show_default=True, help="Newest rows to show.")
@json_option
@db_option
@click.pass_context
def outbox(ctx, status, limit, as_json, db_url) -> None:
    """Show queued tag writes; `dead` rows are the dead-letter list (see `outbox retry`).

    \b
    Examples:
      tagger outbox                       # counts and the newest rows
      tagger outbox --status dead
      tagger outbox --status pending --json
    """
    settings = settings_of(ctx, db_url=db_url)
    ctx.obj = settings
    if ctx.invoked_subcommand is not None:
        return
    from tagger.service.store import jsonable

    store = open_store(settings)
    rows = store.list_outbox(status, limit=limit)
    if as_json:
        for row in rows:
            click.echo(json.dumps(jsonable(row), ensure_ascii=False))
        return
    counts = store.outbox_counts()
    click.echo("  ".join(f"{k}: {v}" for k, v in counts.items()))
    if not rows:
        return
    click.echo(f"{'id':>6}  {'status':<8}{'helpdesk':<11}{'ticket':<14}{'tries':>5}  {'next attempt':<20}  error / tags")
    from tagger.service.sanitize import printable

    for r in rows:  # error texts and ticket ids come from outside: no control characters to the terminal
        detail = printable(r["last_error"] or f"+{','.join(r['add_tags'])}")
        click.echo(f"{r['id']:>6}  {r['status']:<8}{r['helpdesk']:<11}{printable(r['ticket_id'])[:13]:<14}"
                   f"{r['attempts']:>5}  {r['next_attempt_at']:%Y-%m-%d %H:%M:%S}  {detail[:90]}")


@outbox.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all-dead", is_flag=True, help="Requeue every dead-lettered row.")
@db_option
@click.pass_context
def outbox_retry(ctx, ids, all_dead, db_url) -> None:
    """Put dead-lettered rows (by ID, or --all-dead) back in the queue with fresh attempts.

    \b
    Examples:
      tagger outbox retry 17 18
      tagger outbox retry --all-dead
    """
    if not ids and not all_dead:
        raise click.UsageError("name outbox row IDs or pass --all-dead")
    n = open_store(settings_of(ctx, db_url=db_url)).retry(ids, all_dead=all_dead)
    click.echo(f"requeued {n} row(s)")
    if ids and n < len(set(ids)):
        click.echo("note: only dead rows can be retried; the others were left alone", err=True)


# -------------------------------------------------------------------------------------------------- feedback
@click.group()
def feedback() -> None:
    """Agents' corrections of our tags, as training data.

    \b
    Example:
      tagger feedback export -o training_data/feedback.jsonl
    """


@feedback.command("export")
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-", show_default=True,
              help="JSONL file to write (default: stdout).")
@db_option
@click.pass_context
def feedback_export(ctx, output, db_url) -> None:
    """Write each corrected message (the agent's last word) as a training record: text, stage,
    sentiment, channel, lang.

    \b
    Examples:
      tagger feedback export -o corrections.jsonl
      tagger train corrections.jsonl
    """
    examples = open_store(settings_of(ctx, db_url=db_url)).feedback_examples()
    for record in examples:
        output.write(json.dumps(record, ensure_ascii=False) + "\n")
    click.echo(f"exported {len(examples)} correction(s)", err=True)


# ----------------------------------------------------------------------------------------------------- prune
@click.command()
@db_option
@click.option("--days", type=click.IntRange(min=7), help="Keep this many days (default: TAGGER_RETENTION_DAYS).")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@click.pass_context
def prune(ctx, db_url, days, dry_run) -> None:
    """Remove classified messages, settled tag writes and event ids older than the retention period.

    The reports keep their figures: each removed message is first added to the daily counts, which
    `tagger report` and the dashboard read. Corrections (and the messages they correct) are training
    data and are kept, as is every tag write still pending or dead-lettered. The worker runs this every
    hour when TAGGER_RETENTION_DAYS is set.

    \b
    Examples:
      tagger prune --days 90 --dry-run
      TAGGER_RETENTION_DAYS=180 tagger prune
    """
    import datetime as dt

    settings = settings_of(ctx, db_url=db_url)
    days = days or settings.retention_days
    if not days:
        raise click.UsageError("give --days N (at least 7) or set TAGGER_RETENTION_DAYS")
    store = open_store(settings)
    try:
        removed = store.prune(dt.datetime.now(dt.UTC) - dt.timedelta(days=days), dry_run=dry_run)
        left = store.row_counts()
    finally:
        store.close()
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {removed['messages']} message(s), {removed['outbox']} outbox row(s), "
               f"{removed['events']} event id(s) older than {days} days; kept: " +
               ", ".join(f"{k} {v}" for k, v in left.items()))


# -------------------------------------------------------------------------------------------------------- db
@click.group()
def db() -> None:
    """The store's schema: its revision, and upgrades that keep every row.

    \b
    Examples:
      tagger db status
      tagger db upgrade --db postgresql+psycopg://tagger@db/tagger
    """


@db.command("status")
@db_option
@click.pass_context
def db_status(ctx, db_url) -> None:
    """The database's schema revision against the code's."""
    from tagger.service.store import Store

    store = Store(settings_of(ctx, db_url=db_url).db_url, create=False)
    try:
        state = store.schema_revision()
    finally:
        store.close()
    if state.empty:
        click.echo(f"empty database; the tables are created at revision {state.head} on first use")
    elif state.current:
        click.echo(f"schema at revision {state.revision}, as the code expects")
    else:
        where = "newer than" if state.newer else "older than"
        click.echo(f"schema at revision {state.revision or 'none (a release before migrations)'}, {where} the "
                   f"code's {state.head}" + ("" if state.newer else ": run `tagger db upgrade`"))
        ctx.exit(1)


@db.command("upgrade")
@db_option
@click.pass_context
def db_upgrade(ctx, db_url) -> None:
    """Migrate the database to the code's schema revision, keeping every row (stop the service first
    when the release notes say so; several replicas are serialised by a lock)."""
    from tagger.service.store import Store

    store = Store(settings_of(ctx, db_url=db_url).db_url, create=False)
    try:
        before, after = store.upgrade_schema()
    except TaggerError as exc:
        fail(exc)
    finally:
        store.close()
    click.echo(f"schema at revision {after}" + (f" (was {before})" if before != after else " (no change)"))


# ------------------------------------------------------------------------------------------ setup, doctor
def _print_steps(helpdesk: str, steps) -> dict[str, str]:
    from tagger.service.sanitize import printable

    env: dict[str, str] = {}
    for step in steps:
        line = f"{helpdesk:<16}{step.action:<9}{printable(step.what)}"
        click.echo(line + (f"\n{'':<25}{printable(step.detail)}" if step.detail else ""))
        env.update(step.env)
    return env


@click.command()
@click.argument("helpdesk")
@click.option("--url", "public_url", required=True, metavar="URL",
              help="Where the helpdesk reaches this service: its base URL (https://tagger.example.com) or the "
                   "full webhook URL; /webhooks/HELPDESK is added when missing.")
@click.pass_context
def setup(ctx, helpdesk, public_url) -> None:
    """Set HELPDESK up for tagging, in one command (idempotent: run it again at any time).

    Checks the credentials (TAGGER_<HELPDESK>_*), creates the labels/tags the helpdesk needs to show ours,
    and creates the webhook (and the trigger that fires it) pointing at --url with a fresh secret where the
    helpdesk's API allows it. Where it does not, it prints exactly what to click and paste. A secret it
    creates is printed once, as the setting to add to the service's environment.

    \b
    Examples:
      tagger setup zammad --url https://tagger.example.com
      tagger setup zendesk --url https://tagger.example.com/webhooks/zendesk
    """
    import httpx

    from tagger.errors import HelpdeskError
    from tagger.helpdesks import get_adapter
    from tagger.service.setup import set_up, webhook_url

    settings = settings_of(ctx)
    try:
        adapter = get_adapter(helpdesk, settings=settings)
    except TaggerError as exc:
        fail(exc)
    try:
        webhook = webhook_url(adapter.name, public_url)
    except TaggerError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from exc
    try:
        with httpx.Client(timeout=settings.http_timeout_s, follow_redirects=False) as client:
            steps = set_up(adapter, client, webhook)
    except (TaggerError, HelpdeskError) as exc:
        fail(exc)
    env = _print_steps(adapter.name, steps)
    if env:
        click.echo("\nadd to the service's environment (shown once; keep it secret):")
        for key, value in env.items():
            click.echo(f"  {key}={value}")
    manual = sum(step.action == "manual" for step in steps)
    click.echo(f"\n{adapter.name}: set up" + (f"; {manual} step(s) to do by hand (above)" if manual else ""))


@click.command()
@db_option
@adapter_option
@click.pass_context
def doctor(ctx, db_url, adapters) -> None:
    """Per configured helpdesk: reachable, authorised, labels present, last webhook seen, outbox state.
    Exit status 1 when something needs attention.

    \b
    Example:
      tagger doctor
    """
    import datetime as dt

    import httpx

    from tagger.helpdesks import load_adapters
    from tagger.service.setup import diagnose

    settings = settings_of(ctx, db_url=db_url)
    loaded, errors = load_adapters(adapters, settings=settings)
    try:
        store = open_store(settings)
        activity = store.helpdesk_activity()
        store.close()
    except TaggerError as exc:
        fail(exc)
    now = dt.datetime.now(dt.UTC)
    with httpx.Client(timeout=settings.http_timeout_s, follow_redirects=False) as client:
        report = diagnose(loaded, activity, client)
    for d in report:
        _print_steps(d.helpdesk, d.steps)
        ago = (f"{(now - d.last_event).total_seconds() / 3600:.1f} h ago ({d.last_event:%Y-%m-%d %H:%M} UTC)"
               if d.last_event else "never")
        click.echo(f"{d.helpdesk:<16}{'webhook':<9}last seen {ago}")
        click.echo(f"{d.helpdesk:<16}{'outbox':<9}pending {d.outbox.get('pending', 0)}, dead {d.outbox.get('dead', 0)}, "
                   f"written {d.outbox.get('done', 0)}" + ("  <- `tagger outbox --status dead`" if d.outbox.get("dead")
                                                            else ""))
    for name, reason in sorted(errors.items()):
        click.echo(f"{name:<16}{'off':<9}not configured: {reason}")
    if not loaded:
        click.echo("no helpdesk configured: set TAGGER_<HELPDESK>_* (docs/helpdesks.md), then `tagger setup`")
    ctx.exit(1 if sum(d.problems for d in report) else 0)
