"""The label sets (see shared/LABELS.md) and how a label becomes a helpdesk tag."""
from __future__ import annotations

STAGES: tuple[str, ...] = ("lzmot", "zmot", "fmot", "smot", "umot")
SENTIMENTS: tuple[str, ...] = ("positive", "neutral", "negative")
CHANNELS: tuple[str, ...] = ("ticket", "chat", "social")
# the 12 languages of shared/LABELS.md and the 10 added in issue 14 (2026-12)
CORE_LANGS: tuple[str, ...] = ("en", "lv", "da", "zh", "it", "ru", "de", "es", "fr", "pt", "nl", "pl",
                               "sv", "nb", "fi", "cs", "ro", "tr", "uk", "ar", "ja", "ko")
TASKS: dict[str, tuple[str, ...]] = {"stage": STAGES, "sentiment": SENTIMENTS}

DEFAULT_STAGE_PREFIX = "mot_"
DEFAULT_SENTIMENT_PREFIX = "sentiment_"
REVIEW_SUFFIX = "review"


def stage_tag(stage: str, prefix: str = DEFAULT_STAGE_PREFIX) -> str:
    """`zmot` -> `mot_zmot`."""
    return f"{prefix}{stage}"


def sentiment_tag(sentiment: str, prefix: str = DEFAULT_SENTIMENT_PREFIX) -> str:
    """`negative` -> `sentiment_negative`."""
    return f"{prefix}{sentiment}"


def review_tag(prefix: str = DEFAULT_STAGE_PREFIX) -> str:
    """The tag that tells agents a label is a low-confidence guess (`mot_review`)."""
    return f"{prefix}{REVIEW_SUFFIX}"


def tags_for(stage: str, sentiment: str, review: bool, *, stage_prefix: str = DEFAULT_STAGE_PREFIX,
             sentiment_prefix: str = DEFAULT_SENTIMENT_PREFIX) -> list[str]:
    """The tags written to the helpdesk for one prediction."""
    tags = [stage_tag(stage, stage_prefix), sentiment_tag(sentiment, sentiment_prefix)]
    if review:
        tags.append(review_tag(stage_prefix))
    return tags


def is_own_tag(tag: str, *, stage_prefix: str = DEFAULT_STAGE_PREFIX,
               sentiment_prefix: str = DEFAULT_SENTIMENT_PREFIX) -> bool:
    """True for a tag this tool manages (so write-back can replace ours and keep everyone else's)."""
    own = {stage_tag(s, stage_prefix) for s in STAGES} | {sentiment_tag(s, sentiment_prefix) for s in SENTIMENTS}
    return tag in own or tag == review_tag(stage_prefix)


def labels_from_tags(tags: list[str] | set[str], *, stage_prefix: str = DEFAULT_STAGE_PREFIX,
                     sentiment_prefix: str = DEFAULT_SENTIMENT_PREFIX) -> tuple[str | None, str | None]:
    """Read (stage, sentiment) back from a ticket's tags; None where the ticket carries none."""
    stage = next((s for s in STAGES if stage_tag(s, stage_prefix) in tags), None)
    sentiment = next((s for s in SENTIMENTS if sentiment_tag(s, sentiment_prefix) in tags), None)
    return stage, sentiment
