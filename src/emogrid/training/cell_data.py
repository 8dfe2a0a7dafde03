"""A cell's subset as training reads it: the subset files checked row by row (a damaged file is
a DataError naming the line), tokenised once per cell, and padded per batch by the collator.
"""

from __future__ import annotations

import json
from pathlib import Path

from emogrid.errors import DataError

_REBUILD = "the subset is damaged: delete its folder and rerun (the data step rebuilds it)"


def evaluated_splits(spec: dict) -> tuple[str, ...]:
    """The splits a cell is scored on: a tuning cell (spec `tuning`, emogrid.study.tuning) never
    sees the test split, so nothing it reports can leak test labels into a choice."""
    return ("val",) if spec.get("tuning") else ("val", "test")


def load_data(data_dir: Path, spec: dict) -> dict:
    """The subset's manifest and the rows of train, val and (unless tuning) test."""
    manifest = read_json(data_dir / "manifest.json")
    if manifest is None:
        raise DataError(f"no readable manifest.json in {data_dir}", hint="run `emogrid prepare` for this subset first")
    labels = manifest.get("labels") if isinstance(manifest, dict) else None
    if not isinstance(labels, list) or len(labels) < 2:
        raise DataError(f"{data_dir / 'manifest.json'}: expected a 'labels' list of at least 2 names",
                        hint=_REBUILD)
    out = {"manifest": manifest, "labels": list(labels)}
    for split in ("train", *evaluated_splits(spec)):  # a tuning cell never opens test.jsonl
        path = data_dir / f"{split}.jsonl"
        if not path.is_file():
            raise DataError(f"missing {path}", hint="run `emogrid prepare` for this subset first")
        out[split] = _read_jsonl(path, len(labels))
        if not out[split]:
            raise DataError(f"{path} is empty", hint="increase samples or check the subset")
    mode = spec["data"]["mode"]
    out["multi_label"] = mode == "multi"
    return out


def read_json(path: Path) -> dict | None:
    """A JSON file's content, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _read_jsonl(path: Path, n_labels: int | None = None) -> list[dict]:
    """Subset rows (docs/CONTRACTS.md), each checked: a damaged file is a DataError naming the line."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as err:
                raise DataError(f"{path}:{lineno}: not valid JSON ({err})", hint=_REBUILD) from None
            labels = row.get("labels") if isinstance(row, dict) else None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not isinstance(labels, list) \
                    or not labels or not all(isinstance(j, int) and not isinstance(j, bool) for j in labels):
                raise DataError(f"{path}:{lineno}: expected {{\"text\": str, \"labels\": [label index, ...]}}, "
                                f"got {line.strip()[:80]}", hint=_REBUILD)
            if n_labels is not None and not all(0 <= j < n_labels for j in labels):
                raise DataError(f"{path}:{lineno}: label index {labels} outside the manifest's "
                                f"{n_labels} labels", hint=_REBUILD)
            rows.append(row)
    return rows


def encode(tokenizer, rows: list[dict], max_len: int, k: int, multi: bool) -> list[dict]:
    """Tokenise once per cell, unpadded (the collator pads each batch to its own longest)."""
    enc = tokenizer([r["text"] for r in rows], truncation=True, max_length=max_len)
    items = []
    for i, r in enumerate(rows):
        if multi:
            label = [0.0] * k
            for j in r["labels"]:
                label[j] = 1.0
        else:
            label = int(r["labels"][0])
        items.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": label})
    return items


class PadCollator:
    """Dynamic padding for the inputs; labels stacked as long (single) or float (multi-label)."""

    def __init__(self, pad, multi: bool):
        self.pad, self.multi = pad, multi

    def __call__(self, features):
        import torch

        labels = [f["labels"] for f in features]
        batch = self.pad([{"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]} for f in features])
        batch["labels"] = torch.tensor(labels, dtype=torch.float32 if self.multi else torch.long)
        return batch
