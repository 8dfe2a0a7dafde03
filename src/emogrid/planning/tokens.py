"""Token-length statistics the memory model plans for (the longest padded batch it will see).

From the subset's own texts when given (words x 1.345 tokens/word, the BERT WordPiece ratio
measured on the GoEmotions train split), else per dataset (`dataset_token_stats`): GoEmotions
its train split's (mean 19.3, p95 34, p99 38, max 316 tokens with special tokens), any other
dataset its subsets already prepared, else its cells' max_length (dynamic padding never pads
past it: a bound, where GoEmotions' short comments would understate a dataset of reviews).
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


MAX_LENGTH_BOUND = {"source": "max_length (no token statistics for this dataset yet)", "mean": 1 << 30,
                    "p95": 1 << 30, "p99": 1 << 30, "max": 1 << 30}
_SAMPLED_SUBSETS = 3  # prepared subsets read per dataset (they share one source)


def dataset_token_stats(config: dict, results: str | os.PathLike | None = None):
    """A function spec -> the token statistics of the spec's dataset (cached per dataset);
    prepared subsets are looked up in `results`, by default the study's folder."""
    from pathlib import Path

    from emogrid.study.datasets import resolve_dataset
    from emogrid.study.results_dir import study_results_dir

    results = study_results_dir(config) if results is None else results

    cache: dict[str, dict] = {}

    def stats(spec: dict) -> dict:
        name = spec["cell"]["dataset"]
        if name not in cache:
            if resolve_dataset(name, config).kind == "goemotions":
                cache[name] = dict(DEFAULT_TOKEN_STATS)
            else:
                files = sorted(Path(results, "data", name).glob("*/train.jsonl"))[:_SAMPLED_SUBSETS]
                cache[name] = token_stats_from_jsonl(files) if files else dict(MAX_LENGTH_BOUND)
        return cache[name]

    return stats
