"""Right-to-left and CJK text survive every step: cleaning (HTML, quoted replies, direction marks), the hashed
character n-grams and word n-grams, and `tagger classify --explain`, whose terms are pieces of the message in
its own script (Arabic, Japanese, Korean, Chinese), printed as UTF-8, not escapes."""
from __future__ import annotations

import json
import unicodedata

import pytest
from click.testing import CliRunner

from tagger.classifier.features import HashedCharNgrams
from tagger.classifier.text import clean
from tagger.cli import cli

ARABIC = "مرحبا، طلبت غسالة من متجركم يوم الأحد ولم تصل حتى الآن. متى ستصل؟"
ARABIC_HTML = ("<div dir=\"rtl\"><p>مرحبا،&nbsp;<b>طلبي رقم 5521</b> لم يصل</p><br>\u200fشكرا</div>\n\n"
               "> في 3 مارس كتب فريق الدعم:\n> نعتذر عن التأخير")
JAPANESE = "お世話になっております。先週注文した炊飯器がまだ届いておりません。ご確認いただけますでしょうか。"
KOREAN = "안녕하세요, 지난주에 주문한 청소기가 아직 안 왔어요 ㅠㅠ 언제 오나요?"
CHINESE = "我上週買的冷氣到現在還沒送到，請問什麼時候可以安排？"
SCRIPTS = {"ar": ARABIC, "ja": JAPANESE, "ko": KOREAN, "zh": CHINESE}


def _script_letters(text: str) -> set[str]:
    return {ch for ch in text if ch.isalpha() and not ch.isascii()}


def test_cleaning_keeps_right_to_left_text_and_drops_the_markup():
    cleaned = clean(ARABIC_HTML)
    assert "طلبي رقم 5521 لم يصل" in cleaned and "شكرا" in cleaned
    assert "<" not in cleaned and "&nbsp;" not in cleaned
    assert "نعتذر" not in cleaned  # the quoted earlier reply is not the customer's message
    assert unicodedata.is_normalized("NFC", cleaned)


@pytest.mark.parametrize("lang", sorted(SCRIPTS))
def test_cleaning_keeps_every_letter_of_the_script(lang):
    text = SCRIPTS[lang]
    assert _script_letters(clean(text)) == _script_letters(text)


@pytest.mark.parametrize("lang", sorted(SCRIPTS))
def test_char_ngrams_are_made_of_the_script(lang):
    text = clean(SCRIPTS[lang])
    grams = HashedCharNgrams((2, 4), n_bits=18, min_df=1)
    grams.fit([text])
    row = grams.transform([text])
    names = grams.ngrams_of(text)
    assert row.nnz > 10 and set(row.indices) <= set(names)
    letters = _script_letters(text)
    assert sum(1 for g in names.values() if _script_letters(g) & letters) >= 0.8 * len(names)


@pytest.mark.parametrize("lang", sorted(SCRIPTS))
def test_explain_prints_terms_in_the_messages_script(lang):
    text = SCRIPTS[lang]
    result = CliRunner().invoke(cli, ["classify", "--explain", "--channel", "ticket", text])
    assert result.exit_code == 0, result.output
    assert "\\u" not in result.output  # UTF-8, not JSON escapes
    answer = json.loads(result.stdout)
    assert answer["lang"] in (lang, "yue")
    terms = [t for task in ("stage", "sentiment") for t, _w in answer["explain"][task]
             if not t.startswith("channel=") and t != "(encoder)"]
    assert terms, answer["explain"]
    in_script = [t for t in terms if _script_letters(t)]
    assert len(in_script) >= len(terms) // 2, terms
    lowered = text.lower()
    for term in in_script:
        assert term.strip("'").strip() in lowered, term


def test_the_model_labels_right_to_left_and_cjk_text_without_review_for_language(shipped_model):
    for lang, text in SCRIPTS.items():
        pred = shipped_model.predict(text, channel="ticket")
        assert pred.review_reason is None or "outside the trained set" not in pred.review_reason, (lang, pred)
