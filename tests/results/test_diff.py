"""`emogrid diff A B` on two synthetic trees with known differences (fixtures_results.build_diff_pair)
and on a tree against itself."""

from __future__ import annotations

import json

import fixtures_results as F
import pytest

from emogrid import cli
from emogrid.results.tree_diff import diff_trees

LR = "goemotions/m-lr/lora/k2_n100/s0"
FLIP = "goemotions/m-flip/lora/k2_n100/s0"
SAME = "goemotions/m-same/lora/k2_n100/s0"
DATA = "goemotions/m-data/lora/k2_n100/s0"
FAIL = "goemotions/m-fail/lora/k2_n100/s0"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return F.build_diff_pair(tmp_path_factory.mktemp("diff"))


def test_diff_finds_the_known_differences(pair):
    a, b = pair
    diff = diff_trees(a, b)
    assert diff.only_a == ["goemotions/m-gone/lora/k2_n100/s0"]
    assert diff.only_b == ["goemotions/m-new/lora/k2_n100/s0"]
    cells = diff.cells.set_index("cell_id")
    assert cells["significant"].to_dict() == {DATA: False, FAIL: False, FLIP: False, LR: True, SAME: False}
    assert (cells.loc[FAIL, "status_a"], cells.loc[FAIL, "status_b"]) == ("ok", "failed")
    assert cells["untested"].to_dict()[DATA] and not cells["untested"].to_dict()[FLIP]
    # only the keys that differ: the learning rate in the spec, torch in the provenance (host and
    # times always differ and are left out)
    assert cells.loc[LR, "spec"] == {"train.lr": (0.0001, 0.001)}
    assert cells.loc[SAME, "spec"] == {}
    assert cells.loc[SAME, "provenance"] == {"versions.torch": ("2.13.0", "2.14.0")}
    m = diff.metrics.set_index(["cell_id", "metric"])
    lr = m.loc[(LR, "test_accuracy")]
    assert lr["test"] == "these two runs (one seed each): McNemar exact" and lr["p_holm"] < 1e-6 and lr["diff"] < -0.2
    assert lr["boot_low"] < lr["diff"] < lr["boot_high"] < 0  # the interval is of B - A
    flip = m.loc[(FLIP, "test_accuracy")]
    assert flip["diff"] == pytest.approx(1 / 300) and flip["p"] == 1.0 and not flip["significant"]
    assert m.loc[(SAME, "test_accuracy"), "diff"] == 0 and m.loc[(SAME, "test_f1_macro"), "p"] == 1.0
    assert "other test examples" in m.loc[(DATA, "test_accuracy"), "note"]
    # the family: every paired test made (3 paired cells x 2 metrics: m-fail failed in B, m-data is unpaired)
    assert diff.counts["tests"] == 6 and "Holm over 6 paired tests" in diff.family
    assert sorted(diff.changed) == [DATA, FAIL, LR]
    assert diff.summary_line().startswith("1 of 5 shared cells differ significantly")


def test_diff_markdown_and_exit_code(pair, capsys):
    a, b = pair
    assert cli.main(["diff", str(a), str(b)]) == 0
    md = capsys.readouterr().out
    assert "**1 of 5 shared cells differ significantly" in md and "1 changed status" in md
    assert "1 finished in both without a paired test (no predictions, or other examples), 1 of them moved" in md
    assert "- spec `train.lr`: 0.0001 → 0.001 (1 cell)" in md
    assert "- provenance `versions.torch`: 2.13.0 → 2.14.0 (every shared cell, 5)" in md
    assert "hostname" not in md and SAME not in md.split("## Cells whose numbers moved")[1].split("##")[0]
    row = diff_trees(a, b).metrics.set_index(["cell_id", "metric"]).loc[(LR, "test_accuracy")]
    assert f"| `{LR}` | test_accuracy | {100 * row['a']:.1f} | {100 * row['b']:.1f} | {100 * row['diff']:+.1f} |" in md
    assert "| ok | failed |" in md
    assert cli.main(["diff", str(a), str(b), "--fail-on-change"]) == 1
    capsys.readouterr()


def test_diff_json(pair, capsys):
    a, b = pair
    assert cli.main(["diff", str(a / "runs"), str(b), "--format", "json"]) == 0  # a runs folder works too
    out = json.loads(capsys.readouterr().out)
    assert out["only_in_a"] == ["goemotions/m-gone/lora/k2_n100/s0"] and out["counts"]["shared"] == 5
    lr = next(c for c in out["shared"] if c["cell_id"] == LR)
    assert lr["significant"] and lr["spec"] == {"train.lr": [0.0001, 0.001]}
    assert {m["metric"] for m in lr["metrics"]} == {"test_accuracy", "test_f1_macro"}
    assert out["summary"].startswith("1 of 5")


def test_a_tree_against_itself_has_no_differences(pair, capsys):
    a, _ = pair
    assert cli.main(["diff", str(a), str(a), "--fail-on-change"]) == 0
    md = capsys.readouterr().out
    assert "**0 of 6 shared cells differ significantly" in md
    assert "No shared finished cell's numbers moved." in md
    assert "No spec or provenance key differs" in md
    diff = diff_trees(a, a)
    assert diff.changed == [] and (diff.metrics["diff"] == 0).all() and (diff.metrics["p"] == 1.0).all()


def test_diff_of_an_empty_folder_is_a_clear_error(tmp_path, pair, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["diff", str(pair[0]), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "B = " in err and "no metrics.json or failure.json" in err
