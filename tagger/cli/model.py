"""The classifier commands: train, evaluate, classify, models, data (a thin layer over tagger.classifier.training,
tagger.classifier.evaluate, tagger.classifier.model, tagger.classifier.registry and tagger.classifier.data)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from tagger.cli.common import json_option, model_option, model_path_of, pass_settings
from tagger.config import Settings


# --------------------------------------------------------------------------------------------------- train
@click.command()
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
    from tagger.classifier.evaluate import format_report
    from tagger.classifier.training import train_version

    started = time.perf_counter()

    def say(msg: str) -> None:
        click.echo(f"[{time.perf_counter() - started:6.1f}s] {msg}", err=True)

    corrections = []
    if feedback:
        from tagger.service.feedback import feedback_examples

        corrections = feedback_examples(settings)
    result = train_version(settings, extra=extra, data_dir=data_dir, models_dir=models_dir, no_holdout=no_holdout,
                           feedback=corrections, activate=activate, force=force, seed=seed, progress=say)
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
@click.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@model_option
@json_option
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
    from tagger.classifier import data as data_mod
    from tagger.classifier.evaluate import compare as compare_reports
    from tagger.classifier.evaluate import evaluate as run_eval
    from tagger.classifier.evaluate import format_report, plot_confusion, plot_coverage
    from tagger.classifier.registry import Registry, load_tagger

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
    tagger = load_tagger(model_path_of(settings, model_path), review_threshold=threshold, fast=fast or None)
    report = run_eval(tagger, examples)
    report["model"] = tagger.metadata.get("version")
    click.echo(json.dumps(report, indent=2, ensure_ascii=False) if as_json else format_report(report))
    for path, draw in ((plot, plot_coverage), (confusion, plot_confusion)):
        if path and report["n"]:
            draw(report, path)
            click.echo(f"wrote {path}", err=True)


# ------------------------------------------------------------------------------------------------ classify
@click.command()
@click.argument("text", required=False)
@click.option("--input", "input_file", type=click.File("rb"), help="JSONL file (default: stdin when no TEXT).")
@click.option("--channel", type=click.Choice(["ticket", "chat", "social"]), help="Channel of TEXT.")
@click.option("--explain", is_flag=True, help="Add the terms that drove each label.")
@model_option
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
    from tagger.classifier.data import input_record
    from tagger.classifier.registry import load_tagger

    tagger = load_tagger(model_path_of(settings, model_path),
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
@click.group()
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
@json_option
@pass_settings
def models_list(settings: Settings, as_json: bool) -> None:
    """Every version with its date, held-out macro-F1 and data hash; * marks the active one.

    \b
    Example:
      tagger models list
    """
    from tagger.classifier.registry import Registry

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
    from tagger.classifier.registry import Registry

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
    from tagger.classifier.data import load_corpus
    from tagger.classifier.registry import Registry
    from tagger.classifier.training import activate_version

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
    from tagger.classifier.registry import Registry

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
    from tagger.classifier.registry import Registry

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
    from tagger.classifier.registry import Registry

    click.echo(f"active: {Registry(settings.models_dir).rollback()}")


# ---------------------------------------------------------------------------------------------------- data
@click.group()
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
    from tagger.classifier import data as data_mod

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
    from tagger.classifier import data as data_mod

    text = data_mod.counts_report(*data_mod.load_corpus(settings.data_dir))
    if not readme:
        click.echo(text)
        return
    data_mod.write_counts(readme, text)
    click.echo(f"updated {readme}")
