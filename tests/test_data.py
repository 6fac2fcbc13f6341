import json

import pytest

from tagger.classifier.data import HOLDOUT_EVERY, corpus_files, is_holdout, load_corpus, read_examples
from tagger.errors import DataError
from tagger.labels import CORE_LANGS, SENTIMENTS, STAGES


def _write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines) + b"\n")
    return path


GOOD = json.dumps({"text": "Where is my parcel?", "stage": "smot", "sentiment": "neutral", "channel": "chat", "lang": "en"})


@pytest.mark.parametrize("bad, reason", [
    ('{"text": "x", "stage": "smot"', "not valid JSON"),
    ('{"text": "x", "stage": "nope", "sentiment": "neutral"}', "field 'stage'"),
    ('{"text": "x", "stage": "smot", "sentiment": "meh"}', "field 'sentiment'"),
    ('{"stage": "smot", "sentiment": "neutral"}', "field 'text'"),
    ('{"text": "x", "stage": "smot", "sentiment": "neutral", "channel": "fax"}', "field 'channel'"),
    ('["a list"]', "expected a JSON object"),
    (b'{"text": "\xff", "stage": "smot", "sentiment": "neutral"}', "not valid UTF-8"),
    ('{"text": "great film", "rating": 9}', "field 'rating'"),
    ('{"text": "great film", "rating": "high"}', "field 'rating'"),
    ('{"text": " ", "rating": 1.5}', "field 'text'"),
])
def test_a_broken_line_names_file_and_line(tmp_path, bad, reason):
    path = _write(tmp_path, "x_01.jsonl", [GOOD, GOOD, bad])
    with pytest.raises(DataError) as err:
        read_examples(path)
    assert err.value.line == 3 and str(path) in str(err.value) and reason in str(err.value)


def test_csv_is_read_and_a_missing_column_is_named(tmp_path):
    ok = tmp_path / "a.csv"
    ok.write_text('text,stage,sentiment\n"Hello, is the Pro plan cheaper yearly?",zmot,neutral\n', encoding="utf-8")
    assert read_examples(ok)[0].stage == "zmot"
    bad = tmp_path / "b.csv"
    bad.write_text("text,stage\nhi,zmot\n", encoding="utf-8")
    with pytest.raises(DataError, match="sentiment"):
        read_examples(bad)


def test_holdout_is_made_of_whole_batches():
    assert is_holdout(f"training_data/lv/lv_{HOLDOUT_EVERY:02d}.jsonl")
    assert not is_holdout("training_data/lv/lv_01.jsonl")
    assert not is_holdout("extra.jsonl")


def test_corpus_meets_the_brief(corpus):
    """Issues 2 and 14: >= 400 messages in each of the 22 core languages, every stage and sentiment in each."""
    train, test = corpus
    everything = [e for e in train + test if e.stage is not None]  # the corpus, not the rated real text
    for lang in CORE_LANGS:
        mine = [e for e in everything if e.lang == lang]
        assert len(mine) >= 400, f"{lang}: only {len(mine)} messages"
        assert {e.stage for e in mine} == set(STAGES), lang
        assert {e.sentiment for e in mine} == set(SENTIMENTS), lang
        assert any(e in test for e in mine), f"{lang}: no held-out batch"


def test_no_text_is_both_in_train_and_held_out(corpus):
    train, test = corpus
    assert not {e.text.strip().lower() for e in train} & {e.text.strip().lower() for e in test}


def test_no_exact_duplicates_in_the_corpus():
    seen = {}
    for path in corpus_files("training_data"):
        for ex in read_examples(path):
            assert ex.text not in seen, f"{ex.source} repeats {seen[ex.text]}"
            seen[ex.text] = ex.source


def test_extra_files_go_to_training(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    _write(d, "en_01.jsonl", [GOOD])
    _write(d, f"en_{HOLDOUT_EVERY:02d}.jsonl", [GOOD.replace("Where", "When")])
    extra = _write(tmp_path, "extra.jsonl", [GOOD.replace("parcel", "box")])
    train, test = load_corpus(d, [extra])
    assert len(train) == 2 and len(test) == 1


def test_rated_records_become_sentiment_only_examples(tmp_path):
    """Human-rated real text (mean rating -4..+4) trains sentiment only; the ambiguous zone is left out."""
    from tagger.classifier.data import NEUTRAL_RATING, POLAR_RATING, sentiment_from_rating

    path = _write(tmp_path, "vader_x_01.jsonl", [json.dumps({"text": t, "rating": r}) for t, r in
                                                  [("loved it", 2.5), ("awful", -3.0), ("it is a film", 0.1),
                                                   ("hm, maybe", 0.5)]])
    got = [(e.text, e.stage, e.sentiment) for e in read_examples(path)]
    assert got == [("loved it", None, "positive"), ("awful", None, "negative"), ("it is a film", None, "neutral")]
    assert sentiment_from_rating(POLAR_RATING) == "positive" and sentiment_from_rating(-POLAR_RATING) == "negative"
    assert sentiment_from_rating(NEUTRAL_RATING) == "neutral" and sentiment_from_rating(0.5) is None


def test_the_real_text_split_holds_files_out_like_the_corpus(corpus):
    train, held = corpus
    rated_train = [e for e in train if e.stage is None]
    rated_held = [e for e in held if e.stage is None]
    assert len(rated_train) > 10_000 and len(rated_held) > 3_000
    assert all(is_holdout(e.batch) for e in rated_held) and not any(is_holdout(e.batch) for e in rated_train)
    assert not {e.text for e in rated_train} & {e.text for e in rated_held} - {""}


# -- broken training files: one-line errors naming the file and the line (security issue, point 8) --------
def test_an_empty_file_is_an_error_not_a_silent_nothing(tmp_path):
    path = tmp_path / "en_01.jsonl"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty") as err:
        read_examples(path)
    assert str(path) in str(err.value)


def test_a_csv_with_a_byte_order_mark_keeps_its_first_column(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefftext,stage,sentiment\nWhere is my parcel?,smot,neutral\n".encode())
    assert [(e.text, e.stage) for e in read_examples(path)] == [("Where is my parcel?", "smot")]


def test_invalid_utf8_in_a_csv_names_its_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b'text,stage,sentiment\n"fine",smot,neutral\n"bro\xffken",smot,neutral\n')
    with pytest.raises(DataError, match="not valid UTF-8") as err:
        read_examples(path)
    assert err.value.line == 3


def test_a_deeply_nested_json_line_is_refused_with_its_line(tmp_path):
    path = _write(tmp_path, "x_01.jsonl", [GOOD, '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}"])
    with pytest.raises(DataError, match="nested too deeply") as err:
        read_examples(path)
    assert err.value.line == 2


def test_too_few_examples_is_a_one_line_error_from_the_cli(tmp_path):
    from click.testing import CliRunner

    from tagger.cli import cli

    data = tmp_path / "data" / "en"
    data.mkdir(parents=True)
    _write(data, "en_01.jsonl", [GOOD.replace("Where", f"Where {i}") for i in range(5)])
    result = CliRunner().invoke(cli, ["train", "--data", str(data.parent), "--models", str(tmp_path / "m")])
    assert result.exit_code != 0 and "at least 20" in result.output and "Traceback" not in result.output
