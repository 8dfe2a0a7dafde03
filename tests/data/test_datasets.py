"""Datasets as a grid axis: local tables of every shape, the hub path, carving, bad datasets.

Small files written here in the shapes of IMDB (text, 0/1 label, train/test only), AG News
(4 classes, jsonl), SemEval-2018 E-c (ID, Tweet, 11 binary columns, train/dev/test, tab-
separated) and a CSV with string labels and a header in one file (no test split: one is
carved). Each goes through `emogrid prepare`'s code path; every bad-dataset case asserts its
message.
"""

from __future__ import annotations

import collections
import copy
import csv
import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from emogrid.data.subset_writer import prepare_subset
from emogrid.errors import ConfigError, DataError
from emogrid.study.config import finalize
from emogrid.study.dataset_definition import DatasetDefinition
from emogrid.study.datasets import BUILTINS, resolve_dataset
from emogrid.study.grid import expand_cells, subsets
from emogrid.study.merge import deep_merge
from emogrid.study.taxonomies import taxonomy_labels
from tests.helpers import REPO

BASE = yaml.safe_load((REPO / "config.yaml").read_text())
EC = ["anger", "anticipation", "disgust", "fear", "joy", "love", "optimism", "pessimism",
      "sadness", "surprise", "trust"]
WORDS = ["great", "awful", "boring", "lovely", "tense", "funny", "dull", "bright", "sad", "calm"]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)


def config_with(datasets: dict, grid: dict | None = None, **extra) -> dict:
    raw = deep_merge(copy.deepcopy(BASE), {"datasets": datasets, **extra})
    raw["grid"] = {**raw["grid"], "datasets": list(datasets), "models": ["bert-base"], "labels": [2],
                   "samples": [40], **(grid or {})}
    return raw


def defn_of(tmp_path, name: str, entry: dict, **grid) -> DatasetDefinition:
    return resolve_dataset(name, finalize(config_with({name: entry}, grid or None)))


def text(i: int, tag: str) -> str:
    return f'{tag} "{WORDS[i % len(WORDS)]}" review number {i}, NA'


def write_csv(path: Path, rows: list[tuple], header: list[str] | None, sep: str = ",") -> None:
    """csv: written by the csv module (quotes doubled); tsv: raw, unquoted, like SemEval's files."""
    if sep == ",":
        with open(path, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            if header:
                writer.writerow(header)
            writer.writerows(rows)
        return
    lines = [sep.join(header)] if header else []
    lines += [sep.join(map(str, row)) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def imdb_dir(root: Path, n_train=120, n_test=60) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_csv(root / "train.csv", [(text(i, "tr"), i % 2) for i in range(n_train)], ["text", "label"])
    write_csv(root / "test.csv", [(text(i, "te"), i % 2) for i in range(n_test)], ["text", "label"])
    return root


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --------------------------------------------------------------------------- shapes


def test_imdb_shaped_csv_train_test_only(tmp_path):
    d = imdb_dir(tmp_path / "imdb")
    defn = defn_of(tmp_path, "imdb_local", {"path": str(d), "text": "text", "label": "label",
                                            "label_names": ["neg", "pos"]})
    m = prepare_subset(defn, 2, 40, 0, tmp_path / "s", cache_dir=tmp_path / "cache")
    assert m["dataset"] == "imdb_local" and m["labels"] == ["neg", "pos"]
    assert m["counts"]["train"] == {"neg": 18, "pos": 18} and m["counts"]["val"] == {"neg": 2, "pos": 2}
    te = read_jsonl(tmp_path / "s" / "test.jsonl")
    assert len(te) == 60 and m["counts"]["test"] == {"neg": 30, "pos": 30}  # the official test split, whole
    assert all(r["id"].startswith("test-") for r in te)
    assert m["source"]["kind"] == "local" and set(m["source"]["files"]) == {"train.csv", "test.csv"}
    assert m["source"]["splits"] == {"train": "train", "val": None, "test": "test"}
    # texts survive the csv reader verbatim ("NA" is text, not a missing value)
    src = {f"train-{i}": text(i, "tr") for i in range(120)}
    for r in read_jsonl(tmp_path / "s" / "train.jsonl"):
        assert r["text"] == src[r["id"]] and r["labels"] == [int(r["id"].split("-")[1]) % 2]
    # the cache stays where it was put
    assert (tmp_path / "cache").is_dir()


def test_ag_news_shaped_jsonl_four_classes(tmp_path):
    d = tmp_path / "ag"
    d.mkdir()
    for split, n in (("train", 200), ("test", 40)):
        (d / f"{split}.jsonl").write_text("".join(
            json.dumps({"text": text(i, split), "label": i % 4}) + "\n" for i in range(n)))
    defn = defn_of(tmp_path, "agn", {"path": str(d), "text": "text", "label": "label",
                                     "label_names": ["World", "Sports", "Business", "Sci/Tech"]}, labels=["all"])
    m = prepare_subset(defn, 4, 80, 3, tmp_path / "s")
    assert m["labels"] == ["World", "Sports", "Business", "Sci/Tech"]
    assert m["counts"]["train"] == dict.fromkeys(m["labels"], 18)
    assert m["counts"]["val"] == dict.fromkeys(m["labels"], 2)  # stratified validation
    assert m["counts"]["test"] == dict.fromkeys(m["labels"], 10)
    cells = expand_cells(finalize(config_with({"agn": {"path": str(d), "text": "text", "label": "label",
                                                       "label_names": ["W", "S", "B", "T"]}},
                                              {"labels": ["all"], "samples": [80]})))
    assert {c.axes["labels"] for c in cells} == {4}


def semeval_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    header = ["ID", "Tweet"] + EC
    for split, n in (("train", 160), ("dev", 30), ("test", 50)):
        rows = []
        for i in range(n):
            flags = [0] * 11
            flags[i % 11] = 1
            if i % 3 == 0:
                flags[(i + 4) % 11] = 1
            rows.append((f"2018-En-{split}-{i:05d}", f'@user "{WORDS[i % 10]}" tweet {i}', *flags))
        write_csv(root / f"2018-E-c-En-{split}.txt", rows, header, sep="\t")
    return root


def test_semeval_ec_multilabel_columns(tmp_path):
    d = semeval_dir(tmp_path / "ec")
    entry = {"path": str(d), "mode": "multi",
             "splits": {"train": "2018-E-c-En-train", "val": "2018-E-c-En-dev", "test": "2018-E-c-En-test"}}
    defn = defn_of(tmp_path, "sem_eval_2018_ec", entry, labels=[4])
    assert defn.label_columns == tuple(EC) and defn.text == "Tweet" and defn.mode == "multi"
    m = prepare_subset(defn, 4, 40, 0, tmp_path / "s")
    assert m["mode"] == "multi" and len(m["labels"]) == 4 and set(m["labels"]) <= set(EC)
    tr = read_jsonl(tmp_path / "s" / "train.jsonl")
    assert any(len(r["labels"]) > 1 for r in tr) and all(r["id"].startswith("2018-En-train") for r in tr)
    assert m["source"]["splits"] == {"train": "2018-E-c-En-train", "val": "2018-E-c-En-dev",
                                     "test": "2018-E-c-En-test"}
    # the dev file is read and checked like the others: a bad cell there fails with its row
    bad = (d / "2018-E-c-En-dev.txt").read_text().replace("\t1\t", "\tyes\t", 1)
    (d / "2018-E-c-En-dev.txt").write_text(bad)
    with pytest.raises(DataError, match=r"sem_eval_2018_ec.*2018-E-c-En-dev.* row \d+: label column '\w+' "
                                        r"holds 'yes'; expected 0/1"):
        prepare_subset(defn, 4, 40, 0, tmp_path / "t")


def test_string_labels_one_file_carves_a_recorded_test_split(tmp_path):
    f = tmp_path / "reviews.csv"
    names = ["negative", "neutral", "positive"]
    write_csv(f, [(i, text(i, "r"), names[i % 3]) for i in range(300)], ["review_id", "body", "sentiment"])
    entry = {"path": str(f), "text": "body", "label": "sentiment", "id": "review_id"}
    defn = defn_of(tmp_path, "reviews", entry, labels=[3], samples=[60])
    m = prepare_subset(defn, 3, 60, 0, tmp_path / "s")
    assert m["labels"] == ["negative", "neutral", "positive"]  # sorted names: ids in that order
    carved = m["source"]["carved"]["test"]
    assert carved["rows"] == 60 and carved["fraction"] == 0.2 and carved["seed"] == 0 and carved["stratified"]
    assert m["counts"]["test"] == dict.fromkeys(names, 20)  # stratified carve
    assert m["source"]["splits"]["test"] == "carved from train"
    test_ids = {r["id"] for r in read_jsonl(tmp_path / "s" / "test.jsonl")}
    train_ids = {r["id"] for s in ("train", "val") for r in read_jsonl(tmp_path / "s" / f"{s}.jsonl")}
    assert not test_ids & train_ids
    # the carved test split is the same for every subset seed (paired comparisons across seeds)
    other = prepare_subset(defn, 3, 60, 1, tmp_path / "o")
    assert {r["id"] for r in read_jsonl(tmp_path / "o" / "test.jsonl")} == test_ids
    assert other["source"]["carved"] == m["source"]["carved"]
    assert other["files"]["train.jsonl"] != m["files"]["train.jsonl"]


def test_headerless_tsv_with_column_names(tmp_path):
    d = tmp_path / "tsv"
    d.mkdir()
    for split, n in (("train", 80), ("test", 20)):
        (d / f"{split}.tsv").write_text("".join(f'{i % 2}\tsay "{WORDS[i % 10]}" {i}\n' for i in range(n)))
    entry = {"path": str(d), "header": False, "columns": ["label", "text"], "text": "text", "label": "label"}
    m = prepare_subset(defn_of(tmp_path, "plain", entry), 2, 20, 0, tmp_path / "s")
    assert m["labels"] == ["0", "1"] and m["counts"]["test"] == {"0": 10, "1": 10}
    assert any('"' in r["text"] for r in read_jsonl(tmp_path / "s" / "train.jsonl"))


def test_hub_builtin_through_load_dataset(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features({"text": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["neg", "pos"])})
    dsd = datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {"text": [text(i, split) for i in range(n)], "label": [i % 2 for i in range(n)]}, features=feats
            )
            for split, n in (("train", 100), ("test", 30), ("unsupervised", 5))
        }
    )
    calls = []

    def fake(path, name=None, **kw):
        calls.append((path, name, kw.get("revision")))
        return dsd

    monkeypatch.setattr(datasets, "load_dataset", fake)
    defn = resolve_dataset("imdb", finalize(config_with({"imdb": {"hub": {"id": "stanfordnlp/imdb",
                                                                           "revision": "abc123"}}})))
    m = prepare_subset(defn, 2, 20, 0, tmp_path / "s")
    assert calls == [("stanfordnlp/imdb", "plain_text", "abc123")]
    assert m["labels"] == ["neg", "pos"] and m["counts"]["test"] == {"neg": 15, "pos": 15}
    assert m["source"]["kind"] == "hub" and m["source"]["revision"] == "abc123"
    assert m["source"]["fingerprint"]["train"]


def test_builtins_resolve_and_grid_has_a_dataset_axis(tmp_path):
    for name in BUILTINS:
        defn = resolve_dataset(name, finalize(copy.deepcopy(BASE)))
        assert defn.name == name and defn.kind in ("goemotions", "table")
    assert resolve_dataset("goemotions-ekman", finalize(copy.deepcopy(BASE))).taxonomy == "ekman"
    d = imdb_dir(tmp_path / "imdb")
    raw = config_with({"imdb_local": {"path": str(d), "text": "text", "label": "label"}},
                      {"datasets": ["goemotions", "imdb_local"], "labels": [2], "samples": [40]})
    cells = expand_cells(finalize(raw))
    assert {c.axes["dataset"] for c in cells} == {"goemotions", "imdb_local"}
    assert {s[0] for s in subsets(cells)} == {"goemotions", "imdb_local"}
    assert any(c.cell_id.startswith("imdb_local/bert-base/qlora/k2_n40/s") for c in cells)
    # labels: all = every selectable label of each dataset (GoEmotions: 27, neutral left out)
    every = deep_merge(copy.deepcopy(BASE), {"grid": {"datasets": ["goemotions", "emotion", "goemotions-ekman"],
                                                      "labels": ["all"], "samples": [2700]}})
    assert {(c.axes["dataset"], c.axes["labels"]) for c in expand_cells(finalize(every))} == \
        {("goemotions", 27), ("emotion", 6), ("goemotions-ekman", 6)}
    # the legacy data: section still names and places GoEmotions
    legacy = finalize(deep_merge(copy.deepcopy(BASE), {"data": {"name": "goemo2", "taxonomy": "ekman"},
                                                       "grid": {"labels": [6]}}))
    assert {c.axes["dataset"] for c in expand_cells(legacy)} == {"goemo2"}
    assert resolve_dataset("goemo2", legacy).taxonomy == "ekman"
    # the built-in Ekman dataset stays Ekman when the data: section names it (studies/ekman.yaml)
    ek = finalize(deep_merge(copy.deepcopy(BASE), {"data": {"name": "goemotions-ekman"}, "grid": {"labels": [6]}}))
    assert resolve_dataset("goemotions-ekman", ek).taxonomy == "ekman"


# --------------------------------------------------------------------------- bad datasets


def config_error(raw: dict) -> str:
    """The one message a user gets: every check a study passes when it is loaded (sources included)."""
    from emogrid.planning.study_check import check_study

    with pytest.raises(ConfigError) as info:
        check_study(raw)
    return str(info.value)


def test_config_time_errors_name_dataset_and_key(tmp_path):
    d = imdb_dir(tmp_path / "imdb")
    good = {"path": str(d), "text": "text", "label": "label", "label_names": ["neg", "pos"]}
    msg = config_error(config_with({"imdb_local": good}, {"labels": [3]}))
    assert "grid.labels[0]: 3 labels requested but dataset 'imdb_local' has only 2 labels" in msg
    msg = config_error(config_with({"imdb_local": {**good, "text": "review"}}))
    assert "datasets.imdb_local.text: column 'review' is not in" in msg and "train.csv" in msg
    assert "(its columns: text, label)" in msg
    msg = config_error(config_with({"imdb_local": {**good, "path": str(tmp_path / "nope")}}))
    assert f"datasets.imdb_local.path: {tmp_path / 'nope'} does not exist" in msg
    raw = config_with({"imdb_local": good})
    raw["grid"]["datasets"] = ["imbd"]
    msg = config_error(raw)
    assert "grid.datasets[0]: dataset 'imbd' is not defined" in msg and "ag_news" in msg
    msg = config_error(config_with({"x": {"path": str(d), "text": "text"}}))
    assert "datasets.x: needs label:" in msg
    nolabels = {k: v for k, v in good.items() if k != "label_names"}
    msg = config_error(config_with({"x": nolabels}, {"labels": ["all"]}))
    assert "grid.labels[0]: 'all' needs the label names of dataset 'x'" in msg
    msg = config_error(config_with({"x": {**good, "header": False}}))
    assert "datasets.x.columns: a file without a header" in msg
    msg = config_error(config_with({"emotion": {}}, {"labels": [7]}))
    assert "dataset 'emotion' has only 6 labels" in msg


def test_data_step_errors(tmp_path):
    d = imdb_dir(tmp_path / "imdb", n_train=30)
    entry = {"path": str(d), "text": "text", "label": "label", "label_names": ["neg", "pos"]}
    with pytest.raises(DataError, match=r"dataset 'imdb_local' .*split 'train'.*too few single-label examples "
                                        r"for k=2, n=40: label 'neg' has 15 single-label examples"):
        prepare_subset(defn_of(tmp_path, "imdb_local", entry), 2, 40, 0, tmp_path / "o")
    # a label column of the wrong kind: floats, and free text
    f = tmp_path / "floats.csv"
    write_csv(f, [(text(i, "f"), i / 7) for i in range(50)], ["text", "score"])
    with pytest.raises(DataError, match=r"datasets.floats.label: column 'score' holds \['float'\] values; "
                                        r"expected class ids"):
        prepare_subset(defn_of(tmp_path, "floats", {"path": str(f), "text": "text", "label": "score"}),
                         2, 20, 0, tmp_path / "o")
    f = tmp_path / "swapped.csv"
    write_csv(f, [(text(i, "s"), i % 2) for i in range(300)], ["text", "label"])
    with pytest.raises(DataError, match=r"datasets.swapped.label: column 'text' looks like free text"):
        prepare_subset(defn_of(tmp_path, "swapped", {"path": str(f), "text": "label", "label": "text"}),
                         2, 20, 0, tmp_path / "o")
    # class ids above label_names, and names outside label_names
    f = tmp_path / "ids.csv"
    write_csv(f, [(text(i, "i"), i % 3) for i in range(60)], ["text", "label"])
    with pytest.raises(DataError, match=r"datasets.ids.label_names: 2 names, but column 'label' holds class id 2"):
        prepare_subset(defn_of(tmp_path, "ids", {"path": str(f), "text": "text", "label": "label",
                                                   "label_names": ["a", "b"]}), 2, 20, 0, tmp_path / "o")
    f = tmp_path / "names.csv"
    write_csv(f, [(text(i, "n"), ["pos", "neg", "meh"][i % 3]) for i in range(60)], ["text", "label"])
    with pytest.raises(DataError, match=r"column 'label' holds \['meh'\] not in datasets.names.label_names"):
        prepare_subset(defn_of(tmp_path, "names", {"path": str(f), "text": "text", "label": "label",
                                                     "label_names": ["neg", "pos"]}), 2, 20, 0, tmp_path / "o")
    # a split named in splits: that the source lacks
    with pytest.raises(DataError, match=r"no split 'validation2' for datasets.imdb_local.splits.val; "
                                        r"the source has \['test', 'train'\]"):
        prepare_subset(defn_of(tmp_path, "imdb_local", {**entry, "splits": {"val": "validation2"}}),
                         2, 20, 0, tmp_path / "o")
    # an empty text cell, with its row
    f = tmp_path / "empty.csv"
    write_csv(f, [(text(i, "e") if i != 7 else " ", i % 2) for i in range(40)], ["text", "label"])
    with pytest.raises(DataError, match=r"split 'train' row 7: empty text in column 'text'"):
        prepare_subset(defn_of(tmp_path, "empty", {"path": str(f), "text": "text", "label": "label"}),
                         2, 20, 0, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_hub_column_missing_is_named(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    dsd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"sentence": ["a b"] * 10, "label": [0, 1] * 5})})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **kw: dsd)
    defn = resolve_dataset("ag_news", finalize(config_with({"ag_news": {}})))
    with pytest.raises(DataError, match=r"dataset 'ag_news' \(hub 'fancyzhx/ag_news'\) split 'train': no column "
                                        r"'text' \(datasets.ag_news.text\); its columns are \['sentence', 'label'\]"):
        prepare_subset(defn, 2, 4, 0, tmp_path / "o")


def test_goemotions_dev_tsv_is_validated(tmp_path):
    good = "".join(f"text {i}\t{i % 2}\tid{i}\n" for i in range(40))
    d = tmp_path / "ge"
    d.mkdir()
    for name in ("train.tsv", "test.tsv"):
        (d / name).write_text(good)
    (d / "dev.tsv").write_text(good + "broken line without tabs\n")
    (d / "labels.txt").write_text("\n".join(taxonomy_labels("original")) + "\n")
    cfg = DatasetDefinition.from_json({"name": "goemotions", "path": str(d), "taxonomy": "original", "mode": "single",
                                       "labels": None, "val_fraction": 0.1, "test": "natural"})
    with pytest.raises(
        DataError, match=r"dev\.tsv:41: expected 3 tab-separated columns \(text, label ids, id\), found 1"
    ):
        prepare_subset(cfg, 2, 10, 0, tmp_path / "o")
    (d / "dev.tsv").write_text(good.replace("\t1\tid3\n", "\t99\tid3\n"))
    with pytest.raises(DataError, match=r"dev\.tsv:4: label id 99 out of range"):
        prepare_subset(cfg, 2, 10, 0, tmp_path / "o")
    (d / "dev.tsv").write_text(good)
    assert prepare_subset(cfg, 2, 10, 0, tmp_path / "o")["k"] == 2


def test_label_counts_of_builtins_match_their_definitions():
    # GoEmotions: 28 labels, neutral left out by config, not code
    assert BUILTINS["goemotions"]["exclude_labels"] == ["neutral"]
    assert len(BUILTINS["sem_eval_2018_ec"]["label_columns"]) == 11
    counter = collections.Counter(b["kind"] for b in BUILTINS.values())
    assert counter == {"goemotions": 2, "table": 5}


def test_parquet_with_id_lists_multi_label_and_explicit_labels(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    d = tmp_path / "pq"
    d.mkdir()
    names = ["anger", "joy", "fear", "none"]
    for split, n in (("train", 120), ("test", 40)):
        labels = [[i % 3] + ([3] if i % 4 == 0 else []) for i in range(n)]
        pq.write_table(
            pa.table({"sentence": [text(i, split) for i in range(n)], "tags": labels}), d / f"{split}.parquet"
        )
    entry = {"path": str(d), "text": "sentence", "label": "tags", "label_names": names, "mode": "multi",
             "exclude_labels": ["none"]}
    defn = defn_of(tmp_path, "tags", entry, labels=[3])
    m = prepare_subset(defn, 3, 30, 0, tmp_path / "s")
    assert m["mode"] == "multi" and m["labels"] == ["anger", "joy", "fear"]  # 'none' never picked
    assert m["source"]["format"] == "parquet"
    # explicit labels, in the order given, for a table dataset
    explicit = defn_of(tmp_path, "tags", {**entry, "labels": ["fear", "anger"]}, labels=[2])
    assert prepare_subset(explicit, 2, 20, 0, tmp_path / "e")["labels"] == ["fear", "anger"]
    msg = config_error(config_with({"tags": {**entry, "labels": ["fear", "rage"]}}, {"labels": [2]}))
    assert "datasets.tags.labels: unknown label(s) ['rage'] for dataset 'tags'" in msg


def test_fetched_hub_snapshot_is_built_in_the_given_cache(tmp_path, monkeypatch):
    """A fetched hub snapshot (emogrid.data.fetch) is read offline; its arrow build lands in the
    data step's cache directory, not in the home directory's HF cache."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    snap = tmp_path / "snapshot"
    (snap / "data").mkdir(parents=True)
    for split, n in (("train", 80), ("test", 20)):
        pq.write_table(pa.table({"text": [text(i, split) for i in range(n)], "label": [i % 2 for i in range(n)]}),
                       snap / "data" / f"{split}-00000-of-00001.parquet")
    home_cache = tmp_path / "home-cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home_cache))
    defn = resolve_dataset("imdb", finalize(config_with({"imdb": {}})))
    defn = dataclasses.replace(defn, hub=dataclasses.replace(defn.hub, config=None)).with_hub_snapshot(str(snap),
                                                                                                       "c0ffee")
    m = prepare_subset(defn, 2, 20, 0, tmp_path / "s", cache_dir=tmp_path / "cache")
    assert m["source"]["commit"] == "c0ffee" and m["counts"]["test"] == {"0": 10, "1": 10}
    assert any((tmp_path / "cache").iterdir())
    assert not home_cache.exists() or not any(home_cache.rglob("*.arrow"))
