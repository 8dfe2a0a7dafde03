"""`data.draw`: the n examples drawn as a paper had them -- balanced (n/k per label, the default),
natural (n at random: the split's own class distribution) or all (the whole split) -- on a small
imbalanced file shaped like dair-ai/emotion (the Nishat paper's data: train / validation / test)
and one shaped like SemEval-2018 E-c (multi-label, the Vinayaka paper's)."""

from __future__ import annotations

import collections
import hashlib
import json
from pathlib import Path

import pytest

from emogrid.data.subset_writer import prepare_subset
from emogrid.errors import DataError
from tests.data.test_data_as_papers import EC_SPLITS, EMOTIONS, definition
from tests.data.test_datasets import read_jsonl, semeval_dir

# rows per label (sadness joy love anger fear surprise): imbalanced like the real set
SIZES = {"train": [100, 60, 40, 20, 12, 8], "validation": [25, 15, 10, 5, 3, 2], "test": [25, 15, 10, 5, 3, 2]}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)


def imbalanced_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, sizes in SIZES.items():
        rows = [{"text": f"{EMOTIONS[j]} text {split} {i}", "label": j} for j, size in enumerate(sizes)
                for i in range(size)]
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def entry(root: Path, **settings) -> dict:
    return {"path": str(root), "text": "text", "label": "label", "label_names": EMOTIONS, **settings}


def label_counts(rows: list[dict]) -> list[int]:
    counts = collections.Counter(r["labels"][0] for r in rows)
    return [counts[j] for j in range(6)]


def test_natural_keeps_the_splits_class_distribution(tmp_path):
    d = imbalanced_dir(tmp_path / "emotion")
    defn = definition("emotion6", entry(d, draw="natural"), labels=[6], samples=[120])
    manifest = prepare_subset(defn, 6, 120, 0, tmp_path / "s")
    train, val = (read_jsonl(tmp_path / "s" / f"{s}.jsonl") for s in ("train", "val"))
    assert len(train) + len(val) == 120 and len({r["id"] for r in train + val}) == 120
    drawn = [a + b for a, b in zip(label_counts(train), label_counts(val))]
    assert drawn[0] > 3 * drawn[5]  # imbalanced as the split is (balanced: 20 each, more than surprise has)
    # validation stratified by label: largest remainder of 12 over the drawn counts
    assert sum(label_counts(val)) == 12 and all(abs(v - 12 * c / 120) < 1 for v, c in zip(label_counts(val), drawn))
    assert manifest["draw"] == "natural"
    # the default: n/k per label (48 = 8 x 6; the rarest label has only 8)
    balanced = prepare_subset(definition("emotion6", entry(d, val_fraction=0.125), labels=[6], samples=[48]),
                              6, 48, 0, tmp_path / "b")
    assert balanced["draw"] == "balanced"
    assert [a + b for a, b in zip(balanced["counts"]["train"].values(), balanced["counts"]["val"].values())] == [8] * 6


def test_all_takes_the_whole_split_and_n_must_say_its_size(tmp_path):
    d = imbalanced_dir(tmp_path / "emotion")
    defn = definition("emotion6", entry(d, draw="all"), labels=[6], samples=[240])
    prepare_subset(defn, 6, 240, 0, tmp_path / "s")
    train, val = (read_jsonl(tmp_path / "s" / f"{s}.jsonl") for s in ("train", "val"))
    assert len(val) == 24 and sorted(r["id"] for r in train + val) == sorted(f"train-{i}" for i in range(240))
    with pytest.raises(DataError, match=r"data.draw all takes every single-label examples of the k=6 labels, 240, "
                                        r"but the samples axis says n=200"):
        prepare_subset(definition("emotion6", entry(d, draw="all"), labels=[6], samples=[200]), 6, 200, 0,
                       tmp_path / "t")
    # k=2: the two most frequent labels' rows, 160 of them
    two = prepare_subset(definition("emotion6", entry(d, draw="all"), samples=[160]), 2, 160, 0, tmp_path / "u")
    assert two["labels"] == ["sadness", "joy"] and sum(two["counts"]["train"].values()) == 160 - 16


def test_all_with_the_sources_validation_split_takes_both_whole(tmp_path):
    """The Nishat paper's 80/10/10: every train row trains, every validation row validates."""
    d = imbalanced_dir(tmp_path / "emotion")
    defn = definition("emotion6", entry(d, draw="all", val_from="source"), labels=[6], samples=[240])
    manifest = prepare_subset(defn, 6, 240, 0, tmp_path / "s")
    assert manifest["counts"]["train"] == dict(zip(EMOTIONS, SIZES["train"]))
    assert manifest["counts"]["val"] == dict(zip(EMOTIONS, SIZES["validation"]))
    natural = prepare_subset(definition("emotion6", entry(d, draw="natural", val_from="source"), labels=[6],
                                        samples=[100]), 6, 100, 0, tmp_path / "n")
    assert sum(natural["counts"]["train"].values()) == 100 and sum(natural["counts"]["val"].values()) == 10


def test_natural_multi_label_draws_rows_with_any_chosen_label(tmp_path):
    d = semeval_dir(tmp_path / "ec")
    defn = definition("sem_eval_2018_ec", {"path": str(d), "mode": "multi", "splits": EC_SPLITS, "draw": "natural"},
                      labels=["all"])
    prepare_subset(defn, 11, 110, 0, tmp_path / "s")
    rows = [r for s in ("train", "val") for r in read_jsonl(tmp_path / "s" / f"{s}.jsonl")]
    assert len(rows) == 110 and len({r["id"] for r in rows}) == 110 and all(r["labels"] for r in rows)


def test_draw_is_in_the_checksum_and_absent_from_a_default_definition(tmp_path):
    d = imbalanced_dir(tmp_path / "emotion")
    assert "draw" not in definition("emotion6", entry(d)).as_json()  # older subsets stay as they are
    assert definition("emotion6", entry(d), data={"draw": "natural"}).draw == "natural"
    m = prepare_subset(definition("emotion6", entry(d, draw="natural"), labels=[6], samples=[120]), 6, 120, 0,
                       tmp_path / "s")
    plain = hashlib.sha256("".join(m["files"][f"{s}.jsonl"] for s in ("train", "val", "test")).encode()).hexdigest()
    assert m["checksum"] != plain


def test_a_wrong_draw_names_the_key():
    from emogrid.errors import ConfigError

    with pytest.raises(ConfigError, match=r"datasets.emotion.draw: expected one of balanced, natural, all"):
        definition("emotion", {"draw": "stratified"})
