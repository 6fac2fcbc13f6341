"""Cleaning a raw message before it is classified: HTML, quoted replies, signatures, URLs,
e-mail addresses, order numbers, control characters. Pure functions, no state."""
from __future__ import annotations

import html
import re
import unicodedata

MAX_CHARS = 4000  # the opening of a message says what it is about; 50 KB mails are cut, not rejected

_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]{0,2000}>", re.S | re.I)
_BLOCK = re.compile(r"<\s*(br|/p|/div|/li|/tr|/h\d)\b[^>]*>", re.I)
_URL = re.compile(r"(?:https?://|www\.)\S+", re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
_NUMBER = re.compile(r"(?<![\w])[#№]?[A-Z]{0,4}[-‐]?\d[\d\s-]{3,}\d\b")
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_WS = re.compile(r"[ \t\u00a0]+")
_NL = re.compile(r"\n{3,}")
_QUOTE_HEADERS = re.compile(
    r"^\s*(on .{0,120} wrote:|am .{0,120} schrieb .{0,80}:|le .{0,120} a écrit ?:|il .{0,120} ha scritto:|"
    r"el .{0,120} escribió:|em .{0,120} escreveu:|op .{0,120} schreef .{0,80}:|den .{0,120} skrev .{0,80}:|"
    r"-----\s*original message\s*-----|-{2,}\s*(ursprüngliche nachricht|message d'origine|messaggio originale)|"
    r"from:\s.+\bsent:\s.+|.{0,40}\d{4}.{0,40}写道[:：]|.{0,80}пиш(ет|ет:)|.{0,80}написал\(?а?\)?:)\s*$",
    re.I,
)
_SIGNATURE = re.compile(r"^(--\s?|__+|sent from my \w+.*|enviado desde mi .*|von meinem .* gesendet)$", re.I)


def strip_html(raw: str) -> str:
    """Turn an HTML body into text: block ends become line breaks, tags go, entities are decoded."""
    if "<" not in raw and "&" not in raw:
        return raw
    text = _BLOCK.sub("\n", raw)
    text = _TAG.sub(" ", text)
    return html.unescape(text)


def strip_quoted(text: str) -> str:
    """Drop quoted earlier mails (`> ...` lines, `On ... wrote:` and all below) and signatures."""
    kept: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if _QUOTE_HEADERS.match(stripped) or _SIGNATURE.match(stripped):
            if kept:  # a message that *starts* with a quote header keeps what follows
                break
            continue
        if stripped.startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept)


def clean(raw: str | bytes | None) -> str:
    """The text the classifier sees. Never raises: junk in, (possibly empty) text out."""
    if raw is None:
        return ""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    text = unicodedata.normalize("NFC", str(raw)[: MAX_CHARS * 4])
    text = strip_html(text)
    text = strip_quoted(text)
    text = _URL.sub(" URL ", text)
    text = _EMAIL.sub(" EMAIL ", text)
    text = _NUMBER.sub(" NUM ", text)
    text = _CTRL.sub(" ", text)
    text = _WS.sub(" ", text)
    text = _NL.sub("\n\n", text).strip()
    return text[:MAX_CHARS]


_PLACEHOLDER = re.compile(r"\b(?:URL|EMAIL|NUM)\b")


def without_placeholders(text: str) -> str:
    """The cleaned text minus the URL/EMAIL/NUM placeholders `clean` put in."""
    return _PLACEHOLDER.sub(" ", text)


def has_letters(text: str) -> bool:
    """True when the text holds at least one letter in any script, placeholders aside
    (emoji-only, numbers-only and junk hold none)."""
    return any(ch.isalpha() for ch in without_placeholders(text))


# Greetings, fillers and pings that carry no request, verdict or feeling, in the core languages (and
# English as customers everywhere use it). A message made only of these (and punctuation or emoji) is
# "content-free": whatever the heads say, an agent has to read the next message to know anything.
_CONTENT_FREE_WORDS = frozenset("""
hi hii hiii hello helo hallo hey heya yo hej hejsa halløj hei moin servus ciao salve buongiorno buonasera
hola buenas buenos dias días bonjour bonsoir salut coucou allo allô olá ola oi oii bom boa dia tarde noite
goedemorgen goedemiddag goedenavond hoi dag cześć czesc dzień dzien dobry witam sveiki labdien labrīt labrit
čau cau привет здравствуйте добрый день вечер утро алло good morning afternoon evening day there anyone
anybody somebody someone is here please pls plz help support guten tag morgen abend grüezi god hallå
test testing ping excuse me sorry ok okay ahoj ei alguém alguien hay qualcuno c'è ce quelqu'un là la
iemand daar jemand da er der nogen noen nikt ktoś ktos кто нибудь есть тут здесь šeit seit kāds kads
""".split())
_CONTENT_FREE_CJK = ("你好", "您好", "在吗", "在嗎", "有人吗", "有人嗎", "哈喽", "嗨", "喂", "客服", "早上好", "晚上好", "请问",
                     "こんにちは", "안녕하세요")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def is_content_free(text: str) -> bool:
    """True for a bare opener ("hi", "hello??", "anyone there?", "你好，在吗") that says nothing yet."""
    bare = without_placeholders(text).lower().strip()
    if not bare or len(bare) > 40:
        return False
    for greeting in _CONTENT_FREE_CJK:
        bare = bare.replace(greeting, " ")
    words = _WORD.findall(bare)
    leftover = _WORD.sub(" ", bare)
    if any(ch.isalpha() for ch in leftover):  # letters the word pattern did not take (CJK left over)
        return False
    return all(w in _CONTENT_FREE_WORDS for w in words)
