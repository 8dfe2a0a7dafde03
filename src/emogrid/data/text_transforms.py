"""Text transforms of a subset's rows (`transforms:` of a dataset), as the papers preprocessed.

Applied in the order given, to every split after the rows are drawn (which rows a subset holds
never depends on them). Pure functions of the text:

* ``lowercase``: ``str.lower``.
* ``strip_urls``: every ``http(s)://...`` or ``www....`` token removed.
* ``remove_stopwords``: every whitespace-separated word whose letters, lowercased and stripped of
  surrounding punctuation, are in scikit-learn's English stop-word list
  (`sklearn.feature_extraction.text.ENGLISH_STOP_WORDS`, 318 words) removed; words are
  matched case-insensitively, the kept ones keep their case and punctuation.

Whitespace is collapsed to single spaces after `strip_urls` and `remove_stopwords`.
"""

from __future__ import annotations

import re
import string

from emogrid.study.dataset_definition import TRANSFORMS  # the names a definition may give

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)


def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return ENGLISH_STOP_WORDS


def _squash(text: str) -> str:
    return " ".join(text.split())


def transform_text(text: str, names: list[str] | tuple[str, ...], stop_words: frozenset[str] | None = None) -> str:
    for name in names:
        if name == "lowercase":
            text = text.lower()
        elif name == "strip_urls":
            text = _squash(_URL.sub(" ", text))
        elif name == "remove_stopwords":
            stop = stop_words if stop_words is not None else _stop_words()
            text = " ".join(w for w in text.split() if w.strip(string.punctuation).lower() not in stop)
        else:
            raise ValueError(f"unknown text transform {name!r}; expected one of {', '.join(TRANSFORMS)}")
    return text


def transform_rows(rows: list[dict], names: list[str] | tuple[str, ...]) -> list[dict]:
    """The rows with their `text` transformed (new dicts; the rest of each row unchanged)."""
    if not names:
        return rows
    stop = _stop_words() if "remove_stopwords" in names else None
    return [{**row, "text": transform_text(row["text"], names, stop)} for row in rows]
