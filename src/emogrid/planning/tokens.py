"""Token-length statistics the memory model plans for (the longest padded batch it will see).

From the subset's own texts when given (words x 1.345 tokens/word, the BERT WordPiece ratio
measured on the GoEmotions train split), else the GoEmotions train split defaults (mean 19.3,
p95 34, p99 38, max 316 tokens with special tokens).
"""

from __future__ import annotations

import json
import math
import os

# GoEmotions train split (43,410 comments), tokenised with BERT WordPiece (incl. [CLS]/[SEP]).
DEFAULT_TOKEN_STATS = {"source": "goemotions-train-default", "mean": 19.3, "p95": 34, "p99": 38,
                       "max": 316}
TOKENS_PER_WORD = 1.345


def token_stats_from_jsonl(paths: list[str | os.PathLike]) -> dict:
    """Token-length stats of subset files (words x TOKENS_PER_WORD + 2 special tokens)."""
    lens = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    words = len(json.loads(line)["text"].split())
                    lens.append(int(math.ceil(words * TOKENS_PER_WORD)) + 2)
    if not lens:
        return dict(DEFAULT_TOKEN_STATS)
    lens.sort()

    def pct(q):
        return lens[min(len(lens) - 1, int(round(q / 100 * (len(lens) - 1))))]

    return {"source": ",".join(str(p) for p in paths), "mean": sum(lens) / len(lens),
            "p95": pct(95), "p99": pct(99), "max": lens[-1]}
