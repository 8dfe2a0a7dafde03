"""emogrid prepare (emogrid.data.prepare and the modules it runs): label selection, balanced subsets,
splits, determinism, sources, bad data, CLI.

Uses the local GoEmotions copy: $EMOGRID_DATA_DIR, else <repo>/../shared/data/goemotions.
Tests that need it skip (with the reason) when it is absent; the bad-data tests build small
TSV directories of their own and always run.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from emogrid import atomic
from emogrid.cli import main
from emogrid.data.goemotions import resolve_source
from emogrid.data.goemotions_tsv import parse_tsv
from emogrid.data.splits import Split
from emogrid.data.subset_selection import select_labels
from emogrid.data.subset_writer import prepare_subset
from emogrid.errors import ConfigError, DataError
from emogrid.study.dataset_definition import DatasetDefinition
from emogrid.study.taxonomies import EKMAN_MAPPING, ekman_id_map, taxonomy_labels

REPO = Path(__file__).resolve().parents[2]


CHECKED = os.environ.get("EMOGRID_DATA_DIR") or str(REPO.parent / "shared" / "data" / "goemotions")


def _data_root() -> Path | None:
    """The directory holding original/ and ekman/, or None."""
    p = Path(CHECKED)
    if (p / "original" / "train.tsv").is_file():
        return p
    if p.name in ("original", "ekman") and (p.parent / "original" / "train.tsv").is_file():
        return p.parent
    return None


ROOT = _data_root()
SKIP_REASON = (
    f"local GoEmotions copy not found at {CHECKED} (original/train.tsv ...): set EMOGRID_DATA_DIR "
    "to the directory holding original/ and ekman/, or put it at <repo>/../shared/data/goemotions"
)
if ROOT is None:
    print(f"tests/data/test_data.py: {SKIP_REASON}", file=sys.stderr)
needs_data = pytest.mark.skipif(ROOT is None, reason=SKIP_REASON)

README_SHA256 = {
    "original/train.tsv": "1c254a142be5c00e80d819b9ae1bbd36d94b2eeb8f4b1271846508d57e57d9c5",
    "original/dev.tsv": "575489c079c9de1097062a01738f998590d6b7ead66dd1c9fd1d2ba01fd8bc62",
    "original/test.tsv": "0587b2dd8b27b97352adbfc3fb083d46005c8946657fdc2b1ca8b1cc7f1f8be4",
    "ekman/train.tsv": "bb74d10aec0975674c665205741ba9fe644cd70f682214624997f3770fd9e53f",
    "ekman/dev.tsv": "011e6579adc4d9bb2ffd908879b99e1594e7647b262cbb2e1c5c9c1c4d7d8bcc",
    "ekman/test.tsv": "f9f9b91827fe134259469368b93abddc2a52e2e2a87beab661023b06cf490baa",
}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)


def cfg(**over) -> DatasetDefinition:
    base = {
        "name": "goemotions",
        "path": str(ROOT) if ROOT else None,
        "hub": {"id": "google-research-datasets/go_emotions", "config": "simplified"},
        "taxonomy": "original",
        "mode": "single",
        "labels": None,
        "val_fraction": 0.1,
        "test": "natural",
    }
    base.update(over)
    return DatasetDefinition.from_json(base)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def plain_rows(taxonomy: str, split: str) -> list[tuple[str, tuple[int, ...], str]]:
    """Independent reader (str.split, not the module's parser)."""
    out = []
    with open(ROOT / taxonomy / f"{split}.tsv", encoding="utf-8") as fh:
        for line in fh:
            text, labs, cid = line.rstrip("\n").split("\t")
            out.append((text, tuple(int(x) for x in labs.split(",")), cid))
    return out


@pytest.fixture(scope="module")
def rows():
    if ROOT is None:
        pytest.skip(SKIP_REASON)
    return {(t, s): plain_rows(t, s) for t in ("original", "ekman") for s in ("train", "dev", "test")}


def top_k_independent(train_rows, names, k, single=True) -> list[str]:
    c = collections.Counter()
    for _t, labs, _i in train_rows:
        if single and len(labs) != 1:
            continue
        c.update(labs)
    ranked = sorted((i for i in range(len(names)) if names[i] != "neutral"), key=lambda i: (-c[i], i))
    return [names[i] for i in sorted(ranked[:k])]


# --------------------------------------------------------------------------- taxonomy + parsing


def test_taxonomy_labels_static():
    orig, ek = taxonomy_labels("original"), taxonomy_labels("ekman")
    assert len(orig) == 28 and orig[27] == "neutral" and orig[0] == "admiration"
    assert ek == ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
    assert sorted(o for os_ in EKMAN_MAPPING.values() for o in os_) == sorted(orig)
    with pytest.raises(ConfigError, match="data.taxonomy"):
        taxonomy_labels("plutchik")
    if ROOT is not None:
        for tax in ("original", "ekman"):
            assert (ROOT / tax / "labels.txt").read_text().split() == taxonomy_labels(tax)


@needs_data
def test_parser_reproduces_readme_counts_and_checksums():
    split = parse_tsv(ROOT / "original" / "train.tsv", 28)
    assert len(split) == 43_410
    assert sum(len(labs) == 1 for labs in split.labels) == 36_308
    assert len(parse_tsv(ROOT / "original" / "dev.tsv", 28)) == 5_426
    assert len(parse_tsv(ROOT / "original" / "test.tsv", 28)) == 5_427
    # quotes survive (QUOTE_NONE): some texts contain '"'
    assert any('"' in t for t in split.texts)
    for rel, sha in README_SHA256.items():
        assert hashlib.sha256((ROOT / rel).read_bytes()).hexdigest() == sha, rel


@needs_data
def test_ekman_mapping_matches_local_files(rows):
    to_ek = ekman_id_map()
    orig = {cid: labs for _t, labs, cid in rows["original", "dev"]}
    ek = {cid: labs for _t, labs, cid in rows["ekman", "dev"]}
    assert orig.keys() == ek.keys()
    for cid, labs in orig.items():
        assert {to_ek[x] for x in labs} == set(ek[cid]), cid


# --------------------------------------------------------------------------- selection


@needs_data
def test_top_k_matches_independent_counts(rows):
    train = parse_tsv(ROOT / "original" / "train.tsv", 28)
    names = taxonomy_labels("original")
    for k in (1, 2, 4, 8, 16, 27):
        got = [names[i] for i in select_labels(train, "original", "single", k, None)]
        assert got == top_k_independent(rows["original", "train"], names, k), k
        got_multi = [names[i] for i in select_labels(train, "original", "multi", k, None)]
        assert got_multi == top_k_independent(rows["original", "train"], names, k, single=False)
    assert [names[i] for i in select_labels(train, "original", "single", 4, None)] == [
        "admiration", "amusement", "approval", "gratitude"]
    with pytest.raises(DataError, match="only 27 non-neutral"):
        select_labels(train, "original", "single", 28, None)


def test_top_k_ties_by_label_id():
    # ids 2 and 1 both have 2 single-label rows; 0 has 3; neutral (27) most but excluded
    split = Split("train.tsv")
    for labs in [(0,), (0,), (0,), (2,), (2,), (1,), (1,), (27,), (27,), (27,), (27,), (3, 5)]:
        split.labels.append(labs)
    assert select_labels(split, "original", "single", 2, None) == [0, 1]
    assert select_labels(split, "original", "single", 3, None) == [0, 1, 2]


@needs_data
def test_single_subset_balance_split_and_test(tmp_path, rows):
    m = prepare_subset(cfg(), 4, 800, 0, tmp_path / "s")
    labels = ["admiration", "amusement", "approval", "gratitude"]
    names = taxonomy_labels("original")
    assert m["labels"] == labels and m["source_label_ids"] == [names.index(x) for x in labels]
    assert m["counts"]["train"] == dict.fromkeys(labels, 180)
    assert m["counts"]["val"] == dict.fromkeys(labels, 20)
    tr, va, te = (read_jsonl(tmp_path / "s" / f"{s}.jsonl") for s in ("train", "val", "test"))
    assert (len(tr), len(va)) == (720, 80)
    train_src = {cid: labs for _t, labs, cid in rows["original", "train"]}
    ids = [r["id"] for r in tr + va]
    assert len(set(ids)) == 800
    for r in tr + va:  # single-label train comments, label index consistent with the source
        assert train_src[r["id"]] == (m["source_label_ids"][r["labels"][0]],)
    # test: every single-label official test row of these labels, nothing else
    want = {cid for _t, labs, cid in rows["original", "test"]
            if len(labs) == 1 and labs[0] in m["source_label_ids"]}
    assert {r["id"] for r in te} == want and len(te) == len(want)
    assert m["counts"]["test"] == dict(collections.Counter(labels[r["labels"][0]] for r in te))
    assert not set(ids) & {r["id"] for r in te}
    # manifest checksums are the files' checksums
    for name, sha in m["files"].items():
        assert hashlib.sha256((tmp_path / "s" / name).read_bytes()).hexdigest() == sha
    assert m["checksum"] == hashlib.sha256("".join(m["files"].values()).encode()).hexdigest()
    assert json.loads((tmp_path / "s" / "manifest.json").read_text()) == m
    assert m["source"] == {"kind": "local", "path": str((ROOT / "original").resolve()),
                           "files": {f"{s}.tsv": README_SHA256[f"original/{s}.tsv"]
                                     for s in ("train", "dev", "test")}}
    assert list(m) == ["dataset", "taxonomy", "mode", "labels", "source_label_ids", "k", "n",
                       "seed", "val_fraction", "val_from", "transforms", "draw", "test_mode", "source", "counts",
                       "files", "checksum"]
    assert (m["val_from"], m["transforms"]) == ("subset", [])


@needs_data
def test_remainder_and_stratified_val(tmp_path):
    m = prepare_subset(cfg(val_fraction=0.15), 3, 1001, 3, tmp_path / "s")
    per_label = {x: m["counts"]["train"][x] + m["counts"]["val"][x] for x in m["labels"]}
    assert list(per_label.values()) == [334, 334, 333]  # remainder to the first labels
    val = list(m["counts"]["val"].values())
    assert sum(val) == 150 and max(val) - min(val) <= 1


@needs_data
def test_balanced_test_split(tmp_path, rows):
    m = prepare_subset(cfg(test="balanced"), 8, 800, 0, tmp_path / "s")
    natural = collections.Counter(labs[0] for _t, labs, _c in rows["original", "test"]
                                  if len(labs) == 1 and labs[0] in m["source_label_ids"])
    cap = min(natural.values())
    assert m["test_mode"] == "balanced"
    assert m["counts"]["test"] == dict.fromkeys(m["labels"], cap)


@needs_data
def test_determinism_byte_identical(tmp_path):
    for c in (cfg(), cfg(mode="multi", test="balanced")):
        a = prepare_subset(c, 4, 800, 7, tmp_path / "a")
        b = prepare_subset(c, 4, 800, 7, tmp_path / "b")
        for name in ("train.jsonl", "val.jsonl", "test.jsonl", "manifest.json"):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert a == b
        other = prepare_subset(c, 4, 800, 8, tmp_path / "c")
        assert other["files"]["train.jsonl"] != a["files"]["train.jsonl"]
    # rewriting an existing subset replaces it whole and leaves no temp dirs behind
    prepare_subset(cfg(), 2, 800, 7, tmp_path / "a")
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["k"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]


@needs_data
def test_explicit_labels(tmp_path):
    m = prepare_subset(cfg(labels=["joy", "anger", "fear"]), 3, 300, 0, tmp_path / "s")
    assert m["labels"] == ["joy", "anger", "fear"] and m["source_label_ids"] == [17, 2, 14]
    first = prepare_subset(cfg(labels=["joy", "anger", "fear"]), 2, 300, 0, tmp_path / "t")
    assert first["labels"] == ["joy", "anger"]
    with pytest.raises(DataError, match="lists only 3"):
        prepare_subset(cfg(labels=["joy", "anger", "fear"]), 4, 300, 0, tmp_path / "u")
    with pytest.raises(DataError, match="unknown label.*'happiness'"):
        prepare_subset(cfg(labels=["joy", "happiness"]), 2, 300, 0, tmp_path / "u")
    assert not (tmp_path / "u").exists()


@needs_data
def test_ekman_subset(tmp_path, rows):
    m = prepare_subset(cfg(taxonomy="ekman"), 6, 2400, 0, tmp_path / "s")
    assert m["labels"] == ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    assert m["counts"]["train"] == dict.fromkeys(m["labels"], 360)
    assert m["source"]["files"]["train.tsv"] == README_SHA256["ekman/train.tsv"]
    ek = taxonomy_labels("ekman")
    top2 = top_k_independent(rows["ekman", "train"], ek, 2)
    assert prepare_subset(cfg(taxonomy="ekman"), 2, 200, 0, tmp_path / "t")["labels"] == top2
    with pytest.raises(DataError, match="only 6 non-neutral"):
        prepare_subset(cfg(taxonomy="ekman"), 7, 700, 0, tmp_path / "u")


@needs_data
def test_multi_label_subset(tmp_path, rows):
    m = prepare_subset(cfg(mode="multi"), 4, 800, 0, tmp_path / "s")
    ids = m["source_label_ids"]
    src = {cid: labs for _t, labs, cid in rows["original", "train"] + rows["original", "test"]}
    tr, va, te = (read_jsonl(tmp_path / "s" / f"{s}.jsonl") for s in ("train", "val", "test"))
    assert len(tr) + len(va) == 800 and len(va) == 80
    assert len({r["id"] for r in tr + va}) == 800
    for r in tr + va + te:  # labels = the comment's labels restricted to the k, sorted
        assert r["labels"] == sorted(ids.index(x) for x in src[r["id"]] if x in ids)
        assert r["labels"]
    assert any(len(r["labels"]) > 1 for r in tr)
    counts = list(m["counts"]["train"].values())
    assert max(counts) / min(counts) < 1.5  # approximately balanced
    want = {cid for _t, labs, cid in rows["original", "test"] if set(labs) & set(ids)}
    assert {r["id"] for r in te} == want and len(te) == len(want)
    bal = prepare_subset(cfg(mode="multi", test="balanced"), 4, 800, 0, tmp_path / "b")
    assert sum(1 for _ in open(tmp_path / "b" / "test.jsonl")) < len(want)
    assert min(bal["counts"]["test"].values()) > 0


# --------------------------------------------------------------------------- errors


def make_dir(root: Path, train: str, test: str | None = None, labels: list[str] | None = None,
             skip: tuple[str, ...] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    body = {"train.tsv": train, "dev.tsv": train, "test.tsv": test if test is not None else train,
            "labels.txt": "\n".join(labels or taxonomy_labels("original")) + "\n"}
    for name, text in body.items():
        if name not in skip:
            (root / name).write_text(text, encoding="utf-8")
    return root


GOOD = "".join(f'he said "hi" {i}\t{i % 2}\tid{i}\n' for i in range(40))


@pytest.mark.parametrize(
    "train, pattern",
    [
        (GOOD + "only two\t1\n", r"train\.tsv:41: expected 3 tab-separated columns .* found 2"),
        (GOOD + "four\t1\tx\ty\n", r"train\.tsv:41: expected 3 .* found 4"),
        ("ok\t0\ta\n\t1\tb\n", r"train\.tsv:2: empty text"),
        ("ok\t0\ta\n   \t1\tb\n", r"train\.tsv:2: empty text"),
        ("ok\t0\ta\nbad\t28\tb\n", r"train\.tsv:2: label id 28 out of range; labels\.txt has 28"),
        ("ok\t0\ta\nbad\t1,x\tb\n", r"train\.tsv:2: label ids must be comma-separated integers"),
        ("ok\t0\ta\nbad\t\tb\n", r"train\.tsv:2: label ids must be"),
        ("ok\t0\ta\nbad\t1\t\n", r"train\.tsv:2: empty comment id"),
        ("ok\t0\ta\nagain\t1\ta\n", r"train\.tsv:2: duplicate comment id 'a' \(also line 1\)"),
        ("", r"train\.tsv: no rows"),
    ],
)
def test_bad_rows(tmp_path, train, pattern):
    d = make_dir(tmp_path / "bad", train, test=GOOD)
    with pytest.raises(DataError, match=pattern) as info:
        prepare_subset(cfg(path=str(d)), 2, 10, 0, tmp_path / "out")
    assert str(d / "train.tsv") in str(info.value)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]  # no temp dirs left


def test_bad_utf8(tmp_path):
    d = make_dir(tmp_path / "bad", GOOD, test=GOOD)
    (d / "test.tsv").write_bytes(GOOD.encode() + b"caf\xe9\t1\tzz\n")
    with pytest.raises(DataError, match=r"test\.tsv:41: not valid UTF-8"):
        prepare_subset(cfg(path=str(d)), 2, 10, 0, tmp_path / "out")


@pytest.mark.parametrize("missing", ["train.tsv", "dev.tsv", "test.tsv", "labels.txt"])
def test_missing_file(tmp_path, missing):
    d = make_dir(tmp_path / "bad", GOOD, skip=(missing,))
    with pytest.raises(DataError, match=rf"{tmp_path / 'bad'}.*\(from data.path\) is missing {missing}"):
        resolve_source(cfg(path=str(d)))


def test_source_errors(tmp_path):
    with pytest.raises(DataError, match=r"nowhere \(from data.path\) does not exist"):
        resolve_source(cfg(path=str(tmp_path / "nowhere")))
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is not a directory"):
        resolve_source(cfg(path=str(tmp_path / "file")))
    d = make_dir(tmp_path / "ek", GOOD, labels=taxonomy_labels("ekman"))
    with pytest.raises(DataError, match=r"labels\.txt: labels .* do not match data.taxonomy 'original'"):
        resolve_source(cfg(path=str(d)))
    (d / "labels.txt").write_text("anger\nanger\n")
    with pytest.raises(DataError, match=r"labels\.txt:2: duplicate label 'anger'"):
        resolve_source(cfg(path=str(d), taxonomy="ekman"))
    # hub source: resolved without touching the network
    src = resolve_source(cfg(path=None))
    assert (src.kind, src.hub.id, src.hub.config) == ("hub", "google-research-datasets/go_emotions", "simplified")


def test_subfolder_and_direct_layouts(tmp_path):
    direct = make_dir(tmp_path / "direct", GOOD)
    assert resolve_source(cfg(path=str(direct))).path == direct.resolve()
    nested = make_dir(tmp_path / "nested" / "ekman", GOOD, labels=taxonomy_labels("ekman")).parent
    assert resolve_source(cfg(path=str(nested), taxonomy="ekman")).path == (nested / "ekman").resolve()
    with pytest.raises(DataError, match="directly or in a 'original/' subfolder"):
        resolve_source(cfg(path=str(nested)))


def test_too_few_examples_small(tmp_path):
    # label 0: 20 single-label rows, label 1: 20, label 2: 3
    train = GOOD + "".join(f"t{i}\t2\tz{i}\n" for i in range(3))
    d = make_dir(tmp_path / "d", train)
    with pytest.raises(DataError, match=r"label 'anger' has 3 single-label comments in the train split, 10 needed"):
        prepare_subset(cfg(path=str(d), labels=["admiration", "amusement", "anger"]), 3, 30, 0, tmp_path / "o")
    with pytest.raises(DataError, match="samples n = 2 is smaller than labels k = 3"):
        prepare_subset(cfg(path=str(d), labels=["admiration", "amusement", "anger"]), 3, 2, 0, tmp_path / "o")
    (d / "test.tsv").write_text(GOOD)  # no 'anger' in the test split
    with pytest.raises(DataError, match=r"test\.tsv: no single-label comments for label\(s\) \['anger'\]"):
        prepare_subset(cfg(path=str(d), labels=["admiration", "amusement", "anger"]), 3, 9, 0, tmp_path / "o")
    m = prepare_subset(cfg(path=str(d)), 2, 10, 0, tmp_path / "o")
    assert m["counts"]["train"] == {"admiration": 4, "amusement": 5}  # val 1, from the first label


@needs_data
def test_too_few_examples_real_data(tmp_path):
    with pytest.raises(DataError) as info:
        prepare_subset(cfg(labels=["grief", "pride", "joy"]), 3, 2400, 0, tmp_path / "o")
    msg = str(info.value)
    assert "train.tsv" in msg and "k=3, n=2400" in msg
    assert "label 'grief' has 39 single-label comments in the train split, 800 needed" in msg
    assert "label 'pride' has 51" in msg and "'joy'" not in msg
    assert "hint:" in msg


@needs_data
def test_env_var_wins_over_data_path(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOGRID_DATA_DIR", str(ROOT))
    m = prepare_subset(cfg(path=str(tmp_path / "does-not-exist")), 2, 100, 0, tmp_path / "o")
    assert m["source"]["path"] == str((ROOT / "original").resolve())
    monkeypatch.setenv("EMOGRID_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="from environment variable EMOGRID_DATA_DIR"):
        resolve_source(cfg())


# --------------------------------------------------------------------------- hub


@pytest.fixture(scope="module")
def fake_hub():
    if ROOT is None:
        pytest.skip(SKIP_REASON)
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features({
        "text": datasets.Value("string"),
        "labels": datasets.List(datasets.ClassLabel(names=taxonomy_labels("original"))),
        "id": datasets.Value("string"),
    })
    dsd = datasets.DatasetDict({
        hub: datasets.Dataset.from_dict(
            {"text": [r[0] for r in rs], "labels": [list(r[1]) for r in rs], "id": [r[2] for r in rs]},
            features=feats)
        for hub, rs in (("train", plain_rows("original", "train")),
                        ("validation", plain_rows("original", "dev")),
                        ("test", plain_rows("original", "test")))
    })
    calls = []
    real = datasets.load_dataset

    def load_dataset(path, name=None, **kw):
        if path in ("csv", "json", "parquet"):  # local files go through load_dataset too
            return real(path, name, **kw)
        calls.append((path, name))
        return dsd

    return load_dataset, calls


@needs_data
def test_hub_path_matches_local(tmp_path, monkeypatch, fake_hub):
    import datasets

    load, calls = fake_hub
    monkeypatch.setattr(datasets, "load_dataset", load)
    for tax, k in (("original", 4), ("ekman", 3)):
        hub = prepare_subset(cfg(path=None, taxonomy=tax), k, 400, 1, tmp_path / f"hub-{tax}")
        local = prepare_subset(cfg(taxonomy=tax), k, 400, 1, tmp_path / f"local-{tax}")
        assert calls[-1] == ("google-research-datasets/go_emotions", "simplified")
        assert hub["source"]["kind"] == "hub" and hub["source"]["id"] == "google-research-datasets/go_emotions"
        assert hub["source"]["config"] == "simplified" and hub["source"]["fingerprint"]["train"]
        # the hub rows rendered as TSV give the local files' checksums, Ekman mapping included
        assert hub["source"]["files"] == local["source"]["files"]
        for name in ("train.jsonl", "val.jsonl", "test.jsonl"):
            assert (tmp_path / f"hub-{tax}" / name).read_bytes() == (tmp_path / f"local-{tax}" / name).read_bytes()


def test_hub_failure_is_a_data_error(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(*a, **kw):
        raise ConnectionError("no internet")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="cannot load dataset hub .*ConnectionError: no internet") as info:
        prepare_subset(cfg(path=None), 2, 100, 0, tmp_path / "o")
    assert "EMOGRID_DATA_DIR" in str(info.value)


# --------------------------------------------------------------------------- atomicity, CLI, speed


@needs_data
def test_failure_keeps_previous_subset(tmp_path, monkeypatch):
    out = tmp_path / "s"
    prepare_subset(cfg(), 2, 200, 0, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(atomic, "write_json", boom)
    with pytest.raises(OSError, match="disk full"):
        prepare_subset(cfg(), 4, 400, 1, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


@needs_data
def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "goemotions" / "k2_n800_s0"
    args = ["prepare", "--data", json.dumps(cfg().as_json()), "--labels", "2", "--samples", "800", "--seed", "0"]
    assert main(args + ["--out", str(out)]) == 0
    assert "admiration, approval" in capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert (m["k"], m["n"], m["seed"]) == (2, 800, 0)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    assert (out / "train.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask

    bad = args[:2] + [json.dumps(cfg(labels=["grief", "pride"]).as_json())] + args[3:] + ["--out", str(tmp_path / "x")]
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert err.startswith("emogrid prepare: error: ") and "label 'grief' has 39" in err
    assert "Traceback" not in err and not (tmp_path / "x").exists()

    assert main(["prepare", "--data", "{not json", "--labels", "2", "--samples", "8", "--seed", "0",
                 "--out", str(tmp_path / "y")]) == 2
    assert "--data: not valid JSON" in capsys.readouterr().err


@needs_data
def test_largest_paper_subset(tmp_path):
    # The papers' largest cell (16 labels x 2,400). Its time is measured in bench/orchestration.py
    # (emogrid prepare k=16 n=2,400), not asserted here: a wall-clock bound fails on a loaded machine.
    manifest = prepare_subset(cfg(), 16, 2400, 0, tmp_path / "s")
    rows = [json.loads(line) for part in ("train", "val") for line in (tmp_path / "s" / f"{part}.jsonl").open()]
    assert len(rows) == 2400 and len({r["id"] for r in rows}) == 2400
    assert len(manifest["labels"]) == 16
