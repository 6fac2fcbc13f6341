"""Language detection with py3langid, whose model ships inside the package (no network at run time)."""
from __future__ import annotations

from functools import lru_cache

from tagger.text import has_letters, without_placeholders

UNKNOWN = "und"  # ISO 639-2 "undetermined": empty, emoji-only or junk input


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import _load_identifier

    return _load_identifier(norm_probs=False)


def detect(text: str) -> str:
    """ISO 639-1 code of the text's language (`und` when there is nothing to tell from)."""
    if not text or not has_letters(text):
        return UNKNOWN
    lang, _score = _identifier().classify(without_placeholders(text[:1000]))
    return lang
