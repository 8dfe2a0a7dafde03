"""GoEmotions' label taxonomies: the 28 original labels and Ekman's grouping of them.

`taxonomy_labels` names the labels of `data.taxonomy` in id order; `EKMAN_MAPPING` is the
GoEmotions repository's ekman_mapping.json (+ neutral), which `ekman_id_map` turns into ids.
"""

from __future__ import annotations

from emogrid.errors import ConfigError

NEUTRAL = "neutral"

ORIGINAL_LABELS = [
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion",
    "curiosity", "desire", "disappointment", "disapproval", "disgust", "embarrassment",
    "excitement", "fear", "gratitude", "grief", "joy", "love", "nervousness", "optimism",
    "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral",
]  # fmt: skip
EKMAN_LABELS = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]

# The GoEmotions repository's ekman_mapping.json (+ neutral), Ekman group -> original labels.
EKMAN_MAPPING: dict[str, list[str]] = {
    "anger": ["anger", "annoyance", "disapproval"],
    "disgust": ["disgust"],
    "fear": ["fear", "nervousness"],
    "joy": ["joy", "amusement", "approval", "excitement", "gratitude", "love", "optimism",
            "relief", "pride", "admiration", "desire", "caring"],
    "sadness": ["sadness", "disappointment", "embarrassment", "grief", "remorse"],
    "surprise": ["surprise", "realization", "confusion", "curiosity"],
    "neutral": ["neutral"],
}  # fmt: skip

TAXONOMIES = {"original": ORIGINAL_LABELS, "ekman": EKMAN_LABELS}


def taxonomy_labels(taxonomy: str) -> list[str]:
    """Label names in id order: original (28, neutral = 27) or ekman (7, neutral = 4)."""
    try:
        return list(TAXONOMIES[taxonomy])
    except (KeyError, TypeError):
        raise ConfigError(
            f"data.taxonomy: expected one of {sorted(TAXONOMIES)}, got {taxonomy!r}"
        ) from None


def ekman_id_map() -> list[int]:
    """original label id -> ekman label id."""
    group_of = {orig: group for group, origs in EKMAN_MAPPING.items() for orig in origs}
    return [EKMAN_LABELS.index(group_of[name]) for name in ORIGINAL_LABELS]
