"""What a dataset definition writes stays byte for byte what it was when the definition was a dict.

Each case resolves a definition from a config the way the workflow does (`dataset_definitions`),
passes its JSON to `emogrid prepare` (the data rule's `--data` parameter) and compares, against
values recorded from the code before the definition became a dataclass: the rule parameter (a
changed one reruns every subset of the dataset), the manifest's bytes and the subset checksum.
Paths under the test's temporary folder and the GoEmotions copy, and the fingerprints `datasets`
gives a local table's build, are replaced by placeholders.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re

import pytest
import yaml

from emogrid.data import prepare
from emogrid.study.config import finalize
from emogrid.study.grid import dataset_definitions
from emogrid.study.merge import deep_merge
from tests.helpers import REPO, require_data
from tests.toy_data import write_toy_csv

BASE = yaml.safe_load((REPO / "config.yaml").read_text())

# (rule parameter sha256, manifest sha256, subset checksum), recorded on the dict-based code (main at 2edba91)
GOLDEN = {
    "legacy": ("2ec9fb22e07cb9372d5f19c20f99a4e7234c5d4ceea63cbc308d642e96c15941",
               "082647a0acccb08f05fc55d0c6f509dd4ec416fbecc1cec09b2039de5a530ffd",
               "923e03b8fae903ddb2de70dd9313af77df2b0ec8d3a24c7221397f1c9a50dd9a"),
    "ekman-multi": ("caa362273d6b9bbbbbab0df7f330f6f918b3ac3a4a1fae00c58b62555e8a67c0",
                    "7083b89a2694dbe20fe9489ed2ef9b887fb187a8dec6a4155e99dfde52bbc705",
                    "f123983608c650c2891feefbb9e83fd9af3e7553d71c2c291b2c47e78b728f5a"),
    "toy-table": ("0c25d3829f7f03783d85f363b6dc8d9788704451130874eab68f0d93052bf71b",
                  "c8e44e56ffe64cf3725520f33b4d0109f8d15752b9e23c0995a098a693861ca5",
                  "ed9cd41bf61546b5413e67d032936c3ebd9da3fb86a8f1179a472cf205513868"),
    "toy-natural-draw": ("62fe5116c26fb7fa48ee921608c0e0cd7ba50dc441ca9c498f10812fd35d2781",
                         "0e812298b6568b757e18abce64107785f3070346e13ac969ce48972fbe7bb726",
                         "c64ee0f43e3db593e1f298474b5375cae9c3d1f8dfb624ad356ff58828633129"),
    "carved-headerless": ("afeb2fcb1523549a94ed2337adec494be1d8c837aa48872bb7b292c18a623387",
                          "4d0d28a632eed30ccec5c8d2838a5c43f1d5c9bbf9e1c1fa988f6532e4ada132",
                          "47bc3e4040acd12e609398ebc7100ecd7f20bfcadcef7a7aadac12f069d81144"),
}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)


def _headerless_tsv(root):
    root.mkdir(parents=True, exist_ok=True)
    lines = [f"r{i}\tsample text {i} word{i % 7}\t{['a', 'b', 'c'][i % 3]}" for i in range(240)]
    (root / "all.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _cases(tmp_path):
    goemotions = require_data().resolve()
    toy = write_toy_csv(tmp_path / "toy")
    tsv = _headerless_tsv(tmp_path / "tsv")
    return {
        # the data: section of a study written before datasets: (GoEmotions, legacy keys)
        "legacy": ({"data": {"path": str(goemotions), "taxonomy": "original", "labels": ["joy", "anger", "fear"]}},
                   "goemotions", 3, 90, 1),
        "ekman-multi": ({"data": {"path": str(goemotions), "mode": "multi", "val_from": "source",
                                  "transforms": ["lowercase"], "test": "balanced"},
                         "grid": {"datasets": ["goemotions-ekman"]}}, "goemotions-ekman", 4, 120, 2),
        "toy-table": ({"datasets": {"toy": {"path": str(toy), "label": "label", "text": "text"}},
                       "grid": {"datasets": ["toy"]}}, "toy", 3, 60, 0),
        "toy-natural-draw": ({"datasets": {"toy": {"path": str(toy), "label": "label", "text": "text",
                                                   "draw": "natural", "labels": ["neg", "mad"]}},
                              "grid": {"datasets": ["toy"]}}, "toy", 2, 50, 4),
        "carved-headerless": ({"datasets": {"t": {"path": str(tsv / "all.tsv"), "header": False,
                                                  "columns": ["id", "text", "label"], "id": "id",
                                                  "label": "label", "splits": {"train": "train"},
                                                  "test_fraction": 0.25, "carve_seed": 3}},
                               "data": {"val_fraction": 0.2, "transforms": ["strip_urls"]},
                               "grid": {"datasets": ["t"]}}, "t", 2, 40, 5),
    }


def _measure(tmp_path, case):
    extra, name, k, n, seed = _cases(tmp_path)[case]
    raw = deep_merge(copy.deepcopy(BASE), extra)
    raw["grid"] = {**raw["grid"], "models": ["bert-base"], "labels": [k], "samples": [n]}
    raw["grid"].setdefault("datasets", [name])
    param = json.dumps(dataset_definitions(finalize(raw))[name].as_json(), sort_keys=True)  # as workflow/rules/data.smk
    out = tmp_path / "subset"
    args = argparse.Namespace(data=param, labels=k, samples=n, seed=seed, out=str(out), fetched="", cache=None)
    assert prepare.run(args) == 0
    manifest = (out / "manifest.json").read_bytes()

    def placeholders(data: bytes) -> bytes:
        # a local table's `datasets` fingerprints hash the temporary build folder: not the definition's doing
        data = re.sub(rb'("fingerprint":\s*)\{[^}]*\}', rb'\1"<varies>"', data)
        return data.replace(str(require_data().resolve()).encode(), b"<goemotions>").replace(
            str(tmp_path).encode(), b"<tmp>")

    return (hashlib.sha256(placeholders(param.encode())).hexdigest(),
            hashlib.sha256(placeholders(manifest)).hexdigest(),
            json.loads(manifest)["checksum"])


@pytest.mark.parametrize("case", ["legacy", "ekman-multi", "toy-table", "toy-natural-draw", "carved-headerless"])
def test_definition_writes_the_same_bytes(tmp_path, case):
    assert _measure(tmp_path, case) == GOLDEN[case]
