"""The CLI, run as a user runs it (click's CliRunner for most, one real subprocess)."""
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tagger.cli import cli

from .conftest import MODELS, ROOT


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.setenv("TAGGER_MODELS_DIR", str(MODELS))
    return CliRunner()


def test_classify_one_message_as_argument(runner):
    result = runner.invoke(cli, ["classify", "Mans pasūtījums vēl nav atnācis, jau 2 nedēļas!"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {"text", "stage", "stage_confidence", "sentiment", "sentiment_confidence", "lang", "tags"} <= set(out)
    assert out["lang"] == "lv"


def test_classify_jsonl_keeps_input_fields_and_reports_bad_lines(runner):
    stdin = "\n".join([
        json.dumps({"id": 1, "text": "Coupon code fails at checkout", "channel": "chat"}),
        "not json at all",
        json.dumps("a bare string is a text"),
        "",
        json.dumps({"id": 4, "no_text": True}),
        json.dumps({"id": 5, "text": "5 stars, best shop in Riga!"}),
    ]) + "\n"
    result = runner.invoke(cli, ["classify", "--explain"], input=stdin)
    assert result.exit_code == 1
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert len(lines) == 5  # the blank line is skipped, every other line answers in order
    assert lines[0]["id"] == 1 and lines[0]["channel"] == "chat" and "explain" in lines[0]
    assert lines[1] == {"error": "not valid JSON: Expecting value (column 1)", "line": 2}  # the wording of data.parse_line
    assert lines[2]["text"] == "a bare string is a text" and "stage" in lines[2]
    assert lines[3]["line"] == 5 and "missing" in lines[3]["error"]
    assert lines[4]["id"] == 5 and lines[4]["stage"]


def test_classify_input_file(runner, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "Kur ir mana paka?"}) + "\n", encoding="utf-8")
    result = runner.invoke(cli, ["classify", "--input", str(src)])
    assert result.exit_code == 0 and json.loads(result.stdout)["lang"] == "lv"


def test_evaluate_prints_per_class_per_language_confusion_real_text_and_coverage(runner, tmp_path):
    curve, cm = tmp_path / "coverage.png", tmp_path / "cm.png"
    files = [ROOT / "training_data" / "lv" / "lv_24.jsonl", ROOT / "training_data" / "en" / "en_24.jsonl",
             ROOT / "training_data" / "vader" / "vader_tweets_04.jsonl"]  # held-out batches
    result = runner.invoke(cli, ["evaluate", *map(str, files), "--plot", str(curve), "--confusion", str(cm)])
    assert result.exit_code == 0, result.output
    for needle in ("== stage: macro-F1", "== sentiment: macro-F1", "precision", "confusion", "lzmot", "\nlv ",
                   "== real text", "vader_tweets", "polarity acc.", "== review tag: coverage", "<- default"):
        assert needle in result.stdout, needle
    for png in (curve, cm):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_fast_path_and_classify_fast(runner, tmp_path):
    f = tmp_path / "gold.jsonl"
    f.write_text(json.dumps({"text": "Do you ship to Latvia?", "stage": "zmot", "sentiment": "neutral"}) + "\n",
                 encoding="utf-8")
    result = runner.invoke(cli, ["evaluate", str(f), "--fast"])
    assert result.exit_code == 0 and "fast path" in result.stdout, result.output
    out = runner.invoke(cli, ["classify", "--fast", "Where is my parcel?"])
    assert out.exit_code == 0 and json.loads(out.stdout)["stage"], out.output


def test_threshold_is_the_lowest_that_reaches_the_target():
    from tagger.classifier.training import choose_threshold

    rows = [{"threshold": t, "accuracy_no_review": a} for t, a in ((0.0, 0.7), (0.5, 0.89), (0.6, 0.91), (0.7, 0.95))]
    assert choose_threshold(rows, 0.90) == 0.6
    assert choose_threshold(rows, 0.99) is None


def test_evaluate_json_on_a_given_file(runner, tmp_path):
    f = tmp_path / "gold.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"text": "Ordered a lamp 3 weeks ago, still nothing. Where is it?", "stage": "smot", "sentiment": "negative", "lang": "en"},
        {"text": "Do you ship to Latvia?", "stage": "zmot", "sentiment": "neutral", "lang": "en"},
    ]) + "\n", encoding="utf-8")
    result = runner.invoke(cli, ["evaluate", str(f), "--json"])
    report = json.loads(result.stdout)
    assert report["n"] == 2 and report["stage"]["per_lang"]["en"]["n"] == 2


def test_broken_training_file_names_file_and_line(runner, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "stage": "smot", "sentiment": "neutral"}\n{"text": "x", "stage": "bogus", "sentiment": "neutral"}\n')
    result = runner.invoke(cli, ["data", "check", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:2" in result.output and "stage" in result.output and "Traceback" not in result.output


def test_train_writes_a_verified_version_with_metrics(runner, tmp_path):
    data = tmp_path / "data"
    for lang in ("en", "lv"):
        (data / lang).mkdir(parents=True)
        for src in sorted((ROOT / "training_data" / lang).glob("*.jsonl"))[:5]:
            (data / lang / src.name).write_bytes(src.read_bytes())
    models = tmp_path / "models"
    result = runner.invoke(cli, ["train", "--data", str(data), "--models", str(models)])
    assert result.exit_code == 0, result.output
    version = result.stdout.strip().splitlines()[-1]
    meta = json.loads((models / version / "metadata.json").read_text())
    assert meta["metrics"]["stage"]["per_class"]["smot"]["support"] > 0
    assert meta["n_test"] > 0 and all(len(h) == 64 for h in meta["files"].values())
    listed = runner.invoke(cli, ["models", "list", "--json"], env={"TAGGER_MODELS_DIR": str(models)})
    assert json.loads(listed.stdout)[0]["active"] is True


def test_console_script_runs_in_a_real_process():
    proc = subprocess.run([sys.executable, "-m", "tagger.cli", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 or "Usage" in proc.stdout
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "tagger") if (ROOT / ".venv/bin/tagger").exists() else "tagger", "classify"],
        input='{"text":"Mans pasūtījums vēl nav atnācis, jau 2 nedēļas!"}\n', capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["stage"] and out["sentiment"] and "stage_confidence" in out


def test_train_with_feedback_learns_the_agents_corrections(runner, tmp_path):
    """An agent's correction in the store becomes training data with `tagger train --feedback`."""
    from tagger.service.store import Store

    db = f"sqlite:///{tmp_path / 'tagger.db'}"
    store = Store(db)
    rec = store.record_classification(
        helpdesk="zendesk", ticket_id="9", event_id="e9", text_hash="h9",
        prediction={"stage": "zmot", "sentiment": "neutral", "stage_confidence": 0.6, "sentiment_confidence": 0.7,
                    "lang": "en", "review": False},
        channel="chat", model_version="v-test", add=["mot_zmot"], remove=[])
    message = store.last_message("zendesk", "9")
    assert message["id"] == rec.message_id
    store.record_correction(message=message, event_id="e10", new_stage="fmot", new_sentiment="negative",
                            text="The coupon code SPRING keeps failing at checkout")
    store.close()
    data = tmp_path / "data" / "en"
    data.mkdir(parents=True)
    for src in sorted((ROOT / "training_data" / "en").glob("*.jsonl"))[:4]:
        (data / src.name).write_bytes(src.read_bytes())
    models = tmp_path / "models"
    env = {"TAGGER_DB_URL": db}
    plain = runner.invoke(cli, ["train", "--data", str(data.parent), "--models", str(models), "--no-activate"], env=env)
    with_fb = runner.invoke(cli, ["train", "--data", str(data.parent), "--models", str(models), "--no-activate",
                                  "--feedback"], env=env)
    assert plain.exit_code == 0 and with_fb.exit_code == 0, with_fb.output
    assert "adding 1 agent corrections" in with_fb.output
    n = {json.loads((models / v / "metadata.json").read_text())["n_train"] for v in
         (plain.stdout.split()[-1], with_fb.stdout.split()[-1])}
    assert len(n) == 2 and max(n) - min(n) == 1


def test_feedback_export_writes_training_jsonl(runner, tmp_path):
    from tagger.service.store import Store

    db = f"sqlite:///{tmp_path / 'tagger.db'}"
    store = Store(db)
    store.record_classification(
        helpdesk="zammad", ticket_id="5", event_id="a", text_hash="h",
        prediction={"stage": "smot", "sentiment": "neutral", "stage_confidence": 0.9, "sentiment_confidence": 0.9,
                    "lang": "lv", "review": False},
        channel="ticket", model_version="v-test", add=["mot_smot"], remove=[])
    store.record_correction(message=store.last_message("zammad", "5"), event_id="b", new_stage="umot",
                            new_sentiment="positive", text="Paldies, lielisks serviss!")
    store.close()
    out = tmp_path / "fb.jsonl"
    result = runner.invoke(cli, ["feedback", "export", "-o", str(out)], env={"TAGGER_DB_URL": db})
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert rows == [{"text": "Paldies, lielisks serviss!", "stage": "umot", "sentiment": "positive",
                     "channel": "ticket", "lang": "lv"}]


def test_models_activate_force_never_overrides_the_path_or_the_hash(runner, tmp_path, small_model):
    from tagger.classifier.registry import Registry

    models = tmp_path / "models"
    registry = Registry(models)
    good = registry.save(small_model, {"data_hash": "aa" * 8})
    registry.activate(good)
    bad = registry.save(small_model, {"data_hash": "bb" * 8})
    (models / bad / "model.npz").write_bytes(b"not the saved file")
    outside = tmp_path / "outside"
    outside.mkdir()
    env = {"TAGGER_MODELS_DIR": str(models)}
    for target in (bad, str(outside), "../outside"):
        result = runner.invoke(cli, ["models", "activate", "--force", target], env=env)
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        assert "SHA-256" in result.output or "not a model version name" in result.output
    assert registry.current() == good
