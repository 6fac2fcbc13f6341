"""The batched language detector must answer exactly as py3langid itself does."""
from hypothesis import given, settings
from hypothesis import strategies as st

from tagger.langid import LANGID_BYTES, SMALL_BATCH, UNKNOWN, _encode, _identifier, detect, detect_many
from tagger.text import clean, has_letters


def _reference(text: str) -> str:
    if not text or not has_letters(text):
        return UNKNOWN
    from py3langid.langid import RAW_FLOOR

    from tagger.text import without_placeholders

    lang, score = _identifier().classify(_encode(without_placeholders(text)))
    return UNKNOWN if score == RAW_FLOOR else lang  # featureless: py3langid says "af", we say "und"


def test_batched_detection_equals_py3langid_on_the_corpus(corpus):
    texts = [clean(e.text) for e in corpus[0] + corpus[1] if e.stage is not None]
    assert detect_many(texts) == [_reference(t) for t in texts]


def test_corpus_languages_are_recognised(corpus):
    examples = [e for e in corpus[0] + corpus[1] if e.stage is not None]
    got = detect_many([clean(e.text) for e in examples])
    accuracy = sum(g == e.lang for g, e in zip(got, examples, strict=True)) / len(examples)
    assert accuracy > 0.95


def test_the_core_language_prior_resolves_close_relatives_but_keeps_foreign_text(corpus):
    """With the prior the model uses, corpus messages read as a close relative of their language (da as
    no, es as an) become their language; whole sentences in languages outside the core set stay foreign."""
    from tagger.labels import CORE_LANGS
    from tagger.model import LANG_PRIOR

    examples = [e for e in corpus[0] + corpus[1] if e.stage is not None]
    texts = [clean(e.text) for e in examples]
    plain = detect_many(texts)
    primed = detect_many(texts, prior=LANG_PRIOR, prior_langs=CORE_LANGS)
    right = lambda got: sum(g == e.lang for g, e in zip(got, examples, strict=True)) / len(examples)  # noqa: E731
    assert right(primed) > right(plain) and right(primed) > 0.985
    foreign = {"sv": "Hej, jag har fortfarande inte fått mitt paket och ingen svarar på mina mejl.",
               "fi": "Hei, en ole vieläkään saanut pakettiani eikä kukaan vastaa sähköposteihini.",
               "uk": "Добрий день, я досі не отримав свою посилку, і ніхто не відповідає на листи.",
               "ja": "こんにちは、まだ荷物が届いていません。メールにも返事がありません。",
               "tr": "Merhaba, paketim hala gelmedi ve kimse e-postalarıma cevap vermiyor.",
               "cs": "Dobrý den, stále jsem nedostal svůj balík a nikdo neodpovídá na moje e-maily."}
    assert detect_many(list(foreign.values()), prior=LANG_PRIOR, prior_langs=CORE_LANGS) == list(foreign)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(max_size=LANGID_BYTES), min_size=SMALL_BATCH, max_size=SMALL_BATCH + 4))
def test_batched_detection_equals_py3langid_on_any_text(texts):
    assert detect_many(texts) == [_reference(t) for t in texts]


def test_nothing_to_tell_from():
    assert detect_many(["", "😀", "123 !!!", "NUM URL"]) == [UNKNOWN] * 4
    assert detect("Labdien, kur ir mans sūtījums?") == "lv"
