"""The batched language detector must answer exactly as py3langid itself does."""
import collections

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagger.classifier.langid import (
    CODES,
    LANGID_BYTES,
    SMALL_BATCH,
    UNKNOWN,
    _encode,
    _identifier,
    detect,
    detect_many,
)
from tagger.classifier.text import clean, has_letters


def _reference(text: str) -> str:
    if not text or not has_letters(text):
        return UNKNOWN
    from py3langid.langid import RAW_FLOOR

    from tagger.classifier.text import without_placeholders

    lang, score = _identifier().classify(_encode(without_placeholders(text)))
    return UNKNOWN if score == RAW_FLOOR else lang  # featureless: py3langid says "af", we say "und"


def test_batched_detection_equals_py3langid_on_the_corpus(corpus):
    texts = [clean(e.text) for e in corpus[0] + corpus[1] if e.stage is not None]
    assert detect_many(texts) == [_reference(t) for t in texts]


def test_corpus_languages_are_recognised(corpus):
    examples = [e for e in corpus[0] + corpus[1] if e.stage is not None]
    got = [CODES.get(g, g) for g in detect_many([clean(e.text) for e in examples])]  # py3langid's "no" is nb
    accuracy = sum(g == e.lang for g, e in zip(got, examples, strict=True)) / len(examples)
    assert accuracy > 0.95


def test_the_core_language_prior_resolves_close_relatives_but_keeps_foreign_text(corpus):
    """With the prior the model uses, corpus messages read as a close relative of their language (da as
    no, es as an) become their language; whole sentences in languages outside the core set stay foreign."""
    from tagger.classifier.model import LANG_PRIOR
    from tagger.labels import CORE_LANGS

    examples = [e for e in corpus[0] + corpus[1] if e.stage is not None]
    texts = [clean(e.text) for e in examples]
    plain = detect_many(texts)
    primed = detect_many(texts, prior=LANG_PRIOR, prior_langs=CORE_LANGS)
    right = lambda got: sum(g == e.lang for g, e in zip(got, examples, strict=True)) / len(examples)  # noqa: E731
    assert right(primed) > right(plain) and right(primed) > 0.985
    foreign = {"hu": "Jó napot, a csomagom még mindig nem érkezett meg, és senki sem válaszol az e-mailjeimre.",
               "el": "Καλησπέρα, η παραγγελία μου δεν έχει φτάσει ακόμα και κανείς δεν απαντά στα μηνύματά μου.",
               "he": "שלום, ההזמנה שלי עדיין לא הגיעה ואף אחד לא עונה לי במייל.",
               "vi": "Xin chào, đơn hàng của tôi vẫn chưa đến và không ai trả lời email của tôi.",
               "hi": "नमस्ते, मेरा ऑर्डर अभी तक नहीं आया है और कोई भी मेरे ईमेल का जवाब नहीं दे रहा है।",
               "th": "สวัสดีครับ พัสดุของผมยังไม่มาถึงเลย และไม่มีใครตอบอีเมลของผม"}
    assert detect_many(list(foreign.values()), prior=LANG_PRIOR, prior_langs=CORE_LANGS) == list(foreign)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(max_size=LANGID_BYTES), min_size=SMALL_BATCH, max_size=SMALL_BATCH + 4))
def test_batched_detection_equals_py3langid_on_any_text(texts):
    assert detect_many(texts) == [_reference(t) for t in texts]


def test_nothing_to_tell_from():
    assert detect_many(["", "😀", "123 !!!", "NUM URL"]) == [UNKNOWN] * 4
    assert detect("Labdien, kur ir mans sūtījums?") == "lv"


def test_every_core_language_is_recognised_on_its_held_out_batches(corpus):
    """`lang` is right for all 22 core languages (Norwegian as nb, Arabizi as ar, Cantonese counted as zh)."""
    from tagger.classifier.model import LANG_PRIOR, TRAINED_VARIETIES
    from tagger.labels import CORE_LANGS

    held = [e for e in corpus[1] if e.stage is not None]
    got = detect_many([clean(e.text) for e in held], prior=LANG_PRIOR, prior_langs=CORE_LANGS)
    for lang in CORE_LANGS:
        mine = [TRAINED_VARIETIES.get(g, g) for g, e in zip(got, held, strict=True) if e.lang == lang]
        assert mine and sum(g == lang for g in mine) / len(mine) >= 0.95, (lang, collections.Counter(mine))


@pytest.mark.parametrize("text", [
    "salam, el order bta3i lessa ma wasalsh",        # Egyptian
    "abi a3rf 3ndkum baqat 5G? w kam s3raha bel shahr",   # Gulf
    "7agazt korsy w el flos et5asamet bas mafeesh ticket",
])
def test_arabizi_is_arabic(text):
    from tagger.labels import CORE_LANGS

    assert detect_many([text], prior=10.0, prior_langs=CORE_LANGS) == ["ar"]


@pytest.mark.parametrize("text", [
    "My 2nd order of 3 items arrived at 9am, thanks!", "i would recommend against using id3v2 tags",
    "Pedí 2 cafés a las 9 y llegaron fríos", "The B2B plan costs 59 EUR per seat, 3rd tier",
])
def test_digits_in_other_languages_are_not_arabizi(text):
    from tagger.classifier.langid import is_arabizi

    assert not is_arabizi(text)
