from hypothesis import given
from hypothesis import strategies as st

from tagger.classifier.text import MAX_CHARS, clean, has_letters


def test_html_is_reduced_to_its_text():
    assert clean("<html><body><p>Hello&nbsp;<b>there</b></p><script>alert(1)</script></body></html>") == "Hello there"


def test_quoted_reply_and_signature_are_dropped():
    mail = "Still no refund.\n\nOn Mon, 3 Mar 2026 Support wrote:\n> We are sorry\n> Kind regards"
    assert clean(mail) == "Still no refund."
    assert clean("Thanks!\n-- \nJohn Smith\nACME Ltd") == "Thanks!"
    assert clean("Danke\n\nAm 12.03.2026 um 10:00 schrieb Support <s@x.de>:\n> alt") == "Danke"


def test_urls_emails_and_order_numbers_become_placeholders():
    out = clean("Order #A-55123 see https://shop.example/o/1 or mail me at a.b@c.de")
    assert "55123" not in out and "https" not in out and "a.b@c.de" not in out
    assert "NUM" in out and "URL" in out and "EMAIL" in out


def test_long_text_is_cut_not_rejected():
    assert len(clean("word " * 20_000)) <= MAX_CHARS


def test_binary_and_none_do_not_raise():
    assert clean(None) == ""
    assert clean(b"\xff\xfe\x00\x01abc") == "abc"
    assert not has_letters(clean("😀😀👍"))


@given(st.one_of(st.text(max_size=3000), st.binary(max_size=3000)))
def test_clean_never_raises_and_is_bounded(raw):
    out = clean(raw)
    assert isinstance(out, str) and len(out) <= MAX_CHARS
