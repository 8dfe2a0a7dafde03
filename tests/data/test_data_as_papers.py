"""Data as the papers had it: `val_from: source` (validation rows from the dataset's own split)
and text transforms (lowercase, strip_urls, remove_stopwords), on small files shaped like the
Vinayaka paper's dataset (SemEval-2018 E-c: ID, Tweet, 11 binary columns, train/dev/test,
tab-separated) and the Nishat paper's (dair-ai/emotion: text + a class id of six, train /
validation / test)."""

from __future__ import annotations

import collections
import hashlib
import json
from pathlib import Path

import pytest

from emogrid.data.subset_writer import prepare_subset
from emogrid.data.text_transforms import transform_text
from emogrid.errors import ConfigError, DataError
from emogrid.study.config import finalize
from emogrid.study.dataset_definition import DatasetDefinition
from emogrid.study.datasets import resolve_dataset
from tests.data.test_datasets import EC, read_jsonl, semeval_dir

EMOTIONS = ["sadness", "joy", "love", "anger", "fear", "surprise"]
EC_SPLITS = {"train": "2018-E-c-En-train", "val": "2018-E-c-En-dev", "test": "2018-E-c-En-test"}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)


def definition(name: str, entry: dict, data: dict | None = None, labels=(2,), samples=(40,)) -> DatasetDefinition:
    config = finalize({"grid": {"datasets": [name], "models": ["m"], "methods": ["lora"], "labels": list(labels),
                                "samples": list(samples)},
                       "models": {"m": {"id": "a/b"}}, "datasets": {name: entry}, "data": data or {}})
    return resolve_dataset(name, config)


def emotion_dir(root: Path) -> Path:
    """dair-ai/emotion's shape: jsonl splits train / validation / test, `text` and a class id."""
    root.mkdir(parents=True, exist_ok=True)
    phrases = ["I am SO happy about the new job https://t.co/x1", "i feel the rain is the worst of it all",
               "We were all there and it was lovely!", "He did not answer me, again.",
               "They are afraid of what will happen next", "What? I never saw that coming"]
    for split, n in (("train", 240), ("validation", 60), ("test", 60)):
        rows = [{"text": f"{phrases[i % 6]} ({split} {i})", "label": i % 6} for i in range(n)]
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def test_vinayaka_validation_comes_from_the_datasets_dev_split(tmp_path):
    """E-c, multi-label, 11 labels: all n drawn rows train; the round(n x 0.1) validation rows are
    drawn from the dev file, per label as the train rows are."""
    d = semeval_dir(tmp_path / "ec")
    entry = {"path": str(d), "mode": "multi", "splits": EC_SPLITS, "val_from": "source"}
    manifest = prepare_subset(definition("sem_eval_2018_ec", entry, labels=["all"]), 11, 110, 0, tmp_path / "s")
    train, val = (read_jsonl(tmp_path / "s" / f"{s}.jsonl") for s in ("train", "val"))
    assert len(train) == 110 and all(r["id"].startswith("2018-En-train") for r in train)
    assert len(val) == 11 and all(r["id"].startswith("2018-En-dev") for r in val)  # round(110 x 0.1)
    # one row drawn for each of the 11 labels (round-robin, rarest first): every label present
    assert set().union(*(r["labels"] for r in val)) == set(range(11))
    assert manifest["val_from"] == "source" and manifest["labels"] == EC
    # the default carves validation out of the same 110: the draw of the n rows is the same
    carved = prepare_subset(definition("sem_eval_2018_ec", {**entry, "val_from": "subset"}, labels=["all"]),
                            11, 110, 0, tmp_path / "c")
    carved_ids = {r["id"] for s in ("train", "val") for r in read_jsonl(tmp_path / "c" / f"{s}.jsonl")}
    assert carved_ids == {r["id"] for r in train} and carved["counts"]["train"] != manifest["counts"]["train"]


def test_nishat_lowercase_and_stopwords_with_the_datasets_validation_split(tmp_path):
    """dair-ai/emotion shape: lowercased, scikit-learn's English stop words removed, in every
    split; validation from its own split, balanced over the six labels; rows as without them."""
    d = emotion_dir(tmp_path / "emotion")
    entry = {"path": str(d), "text": "text", "label": "label", "label_names": EMOTIONS,
             "val_from": "source", "transforms": ["lowercase", "remove_stopwords"]}
    manifest = prepare_subset(definition("emotion6", entry, labels=[6], samples=[120]), 6, 120, 0, tmp_path / "s")
    rows = {s: read_jsonl(tmp_path / "s" / f"{s}.jsonl") for s in ("train", "val", "test")}
    assert len(rows["train"]) == 120 and len(rows["val"]) == 12 and len(rows["test"]) == 60
    assert collections.Counter(r["labels"][0] for r in rows["val"]) == {j: 2 for j in range(6)}
    assert all(r["id"].startswith("validation") for r in rows["val"])
    # the phrases of labels 0-2, lowercased, less 'i am so about the', 'i the is the of it all',
    # 'we were all there and it was'; every row of every split, its (split i) tag kept
    expected = {0: "happy new job https://t.co/x1", 1: "feel rain worst", 2: "lovely!"}
    for part in rows.values():
        for r in part:
            if r["labels"][0] in expected:
                src_split, i = r["id"].rsplit("-", 1)
                assert r["text"] == f"{expected[r['labels'][0]]} ({src_split} {i})"
    assert manifest["transforms"] == ["lowercase", "remove_stopwords"]
    # the same rows without the transforms; only the text differs
    plain = prepare_subset(definition("emotion6", {**entry, "transforms": []}, labels=[6], samples=[120]),
                           6, 120, 0, tmp_path / "p")
    plain_rows = {s: read_jsonl(tmp_path / "p" / f"{s}.jsonl") for s in rows}
    assert all([r["id"] for r in rows[s]] == [r["id"] for r in plain_rows[s]] for s in rows)
    assert plain["checksum"] != manifest["checksum"]


def test_transforms_in_order_and_urls():
    assert transform_text("See https://x.io/a AND www.y.org now!", ["strip_urls"]) == "See AND now!"
    assert transform_text("The CAT, and the Dog.", ["remove_stopwords"]) == "CAT, Dog."  # matched case-blind
    assert transform_text("The CAT", ["lowercase", "remove_stopwords"]) == "cat"


def test_the_settings_are_in_the_checksum_and_the_definition(tmp_path):
    """A transform that changes no text still changes the subset's checksum; a definition at the
    defaults lacks both keys (subsets prepared before them are not prepared again), one that sets
    them carries them (the data rule reruns)."""
    d = emotion_dir(tmp_path / "emotion")
    base = {"path": str(d), "text": "text", "label": "label", "label_names": EMOTIONS}
    default = definition("emotion6", base)
    assert "val_from" not in default.as_json() and "transforms" not in default.as_json()
    plain = prepare_subset(default, 2, 40, 0, tmp_path / "a")
    files = plain["files"]  # the checksum at the defaults: as before these settings existed
    old = hashlib.sha256("".join(files[f"{s}.jsonl"] for s in ("train", "val", "test")).encode()).hexdigest()
    assert plain["checksum"] == old
    upper = definition("emotion6", {**base, "transforms": ["strip_urls"]}, data=None)
    assert upper.as_json()["transforms"] == ["strip_urls"] and upper.transforms == ("strip_urls",)
    (d / "train.jsonl").write_text((d / "train.jsonl").read_text().replace(" https://t.co/x1", ""))
    (d / "test.jsonl").write_text((d / "test.jsonl").read_text().replace(" https://t.co/x1", ""))
    a = prepare_subset(default, 2, 40, 0, tmp_path / "b")
    b = prepare_subset(upper, 2, 40, 0, tmp_path / "c")
    assert a["files"] == b["files"] and a["checksum"] != b["checksum"]  # same bytes, other recipe


def test_val_from_source_needs_a_validation_split(tmp_path):
    with pytest.raises(ConfigError, match=r"data.val_from: source, but dataset 'imdb' has no validation split"):
        definition("imdb", {}, data={"val_from": "source"})
    d = emotion_dir(tmp_path / "emotion")
    (d / "validation.jsonl").unlink()
    entry = {"path": str(d), "text": "text", "label": "label", "label_names": EMOTIONS, "val_from": "source"}
    with pytest.raises(DataError, match=r"dataset 'emotion6': val_from: source, but the source has no validation"):
        prepare_subset(definition("emotion6", entry), 2, 40, 0, tmp_path / "s")


def test_too_few_validation_rows_name_the_label(tmp_path):
    d = emotion_dir(tmp_path / "emotion")
    val = [json.loads(line) for line in (d / "validation.jsonl").read_text().splitlines()]
    (d / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in val if r["label"] != 1))
    entry = {"path": str(d), "text": "text", "label": "label", "label_names": EMOTIONS, "val_from": "source"}
    with pytest.raises(DataError, match=r"split 'validation': too few single-label examples for k=2, 4 validation "
                                        r"rows: label 'joy' has 0 single-label examples in the validation split"):
        prepare_subset(definition("emotion6", entry), 2, 40, 0, tmp_path / "s")


def test_a_wrong_transform_names_the_key():
    with pytest.raises(ConfigError, match=r"datasets.emotion.transforms\[0\]: expected one of lowercase, "
                                          r"strip_urls, remove_stopwords"):
        definition("emotion", {"transforms": ["stem"]})
