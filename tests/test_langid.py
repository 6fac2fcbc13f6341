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
    texts = [clean(e.text) for e in corpus[0] + corpus[1]]
    assert detect_many(texts) == [_reference(t) for t in texts]


def test_corpus_languages_are_recognised(corpus):
    examples = corpus[0] + corpus[1]
    got = detect_many([clean(e.text) for e in examples])
    accuracy = sum(g == e.lang for g, e in zip(got, examples, strict=True)) / len(examples)
    assert accuracy > 0.95


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(max_size=LANGID_BYTES), min_size=SMALL_BATCH, max_size=SMALL_BATCH + 4))
def test_batched_detection_equals_py3langid_on_any_text(texts):
    assert detect_many(texts) == [_reference(t) for t in texts]


def test_nothing_to_tell_from():
    assert detect_many(["", "😀", "123 !!!", "NUM URL"]) == [UNKNOWN] * 4
    assert detect("Labdien, kur ir mans sūtījums?") == "lv"
