"""`python -m emogrid.data.goemotions_copy`: the hub's GoEmotions files -> the local TSV layout,
byte-identical to the published copy (original and Ekman)."""

from __future__ import annotations

import os

from emogrid.data import goemotions_copy
from emogrid.data.goemotions import resolve_source
from emogrid.study.dataset_definition import DatasetDefinition
from emogrid.study.taxonomies import ORIGINAL_LABELS
from tests.helpers import require_data
from tests.hub_cache import lay_out_dataset

ROWS = 60


def _head(path, n=ROWS) -> bytes:
    return b"".join(path.read_bytes().splitlines(keepends=True)[:n])


def _hub_split(tsv_bytes: bytes):
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    rows = [line.split("\t") for line in tsv_bytes.decode("utf-8").splitlines()]
    features = Features({"text": Value("string"), "labels": Sequence(ClassLabel(names=ORIGINAL_LABELS)),
                         "id": Value("string")})
    return Dataset.from_dict({"text": [r[0] for r in rows], "labels": [[int(x) for x in r[1].split(",")] for r in rows],
                              "id": [r[2] for r in rows]}, features=features)


def test_copy_from_a_hub_snapshot_matches_the_published_files(tmp_path, monkeypatch, capsys):
    data = require_data()
    original = data / "original"
    splits = {hub: _hub_split(_head(original / name))
              for name, hub in (("train.tsv", "train"), ("dev.tsv", "validation"), ("test.tsv", "test"))}
    snapshot = lay_out_dataset(tmp_path / "hub", "google-research-datasets/go_emotions", "simplified", splits)
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)

    out = tmp_path / "goemotions"
    assert goemotions_copy.main([str(out), "--snapshot", str(snapshot)]) == 0
    assert f"train {ROWS}, dev {ROWS}, test {ROWS}" in capsys.readouterr().out
    for taxonomy in ("original", "ekman"):
        for name in ("train.tsv", "dev.tsv", "test.tsv"):
            assert (out / taxonomy / name).read_bytes() == _head(data / taxonomy / name), (taxonomy, name)
        written, published = ((d / taxonomy / "labels.txt").read_text().split() for d in (out, data))
        assert written == published
    # and emogrid reads it as a local copy of either taxonomy
    monkeypatch.setenv("EMOGRID_DATA_DIR", str(out))
    assert resolve_source(DatasetDefinition.from_json({"taxonomy": "ekman"})).path == (out / "ekman").resolve()
    assert not [p for p in os.listdir(out) if p not in ("original", "ekman")]


def test_copy_without_the_hub_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert goemotions_copy.main([str(tmp_path / "out"), "--snapshot", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "cannot load" in err and "nowhere" in err
    assert not (tmp_path / "out").exists()
