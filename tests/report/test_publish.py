"""`emogrid publish CELL_DIR --repo ORG/NAME`: the folder and model card of a synthetic finished cell,
a dry run that touches no network, and the upload calls (patched)."""

from __future__ import annotations

import json
import socket

import fixtures_results as F
import numpy as np
import pytest

from emogrid import cli
from emogrid.errors import ConfigError, EmogridError
from emogrid.report import publish
from emogrid.report.aggregate import aggregate

REPO = "my-org/minilm-goemotions-k2"
PROVENANCE = {
    "versions": {"emogrid": "0.1.0", "torch": "2.13.0", "transformers": "5.23.0", "peft": "0.21.0"},
    "model_source": {"id": "org/base-model", "revision": "main", "commit": "1234abcd"},
    "data_source": {"kind": "hub", "id": "google-research-datasets/go_emotions", "config": "simplified",
                    "revision": None, "commit": "feedbeef"},
    "hostname": "secret-host", "git_commit": "c0ffee", "data_checksum": "d" * 64,
}
SPEC = {"cell": {}, "cell_id": "", "model": {"name": "base", "id": "org/base-model", "path": None, "revision": None},
        "method": {"name": "lora", "peft": "lora", "quantize": "none"},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.1, "targets": "attention"},
        "train": {"lr": 0.005, "epochs": 3, "batch_size": 16}, "data": {"mode": "single", "threshold": 0.5}}


@pytest.fixture()
def cell(tmp_path):
    """A finished cell with predictions, spec.json and a (stand-in) peft adapter folder."""
    runs = tmp_path / "results" / "runs"
    rng = np.random.default_rng(5)
    gold = {"val": np.array([0, 1] * 10), "test": np.array([0, 1] * 100)}
    cid = F.write_scored_cell(runs, "goemotions", "base", "lora", 2, 100, 0, gold,
                              {s: F.scored_predictions(g, 0.85, rng) for s, g in gold.items()},
                              provenance=PROVENANCE, spec=SPEC)
    adapter = runs / cid / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8,
                                                             "base_model_name_or_path": "/home/me/models/base"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    return runs / cid


@pytest.fixture()
def no_network(monkeypatch):
    """Every way out raises: huggingface_hub's upload and repo calls, and any socket connection."""
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise AssertionError("a dry run touched the network")

    for name in ("create_repo", "upload_folder", "upload_file", "create_commit"):
        monkeypatch.setattr(huggingface_hub.HfApi, name, refuse)
        monkeypatch.setattr(huggingface_hub, name, refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_dry_run_writes_the_folder_and_card_and_touches_no_network(cell, no_network, capsys):
    assert cli.main(["publish", str(cell), "--repo", REPO, "--dry-run"]) == 0
    out = cell.parents[5] / "publish" / REPO  # <results>/publish/ORG/NAME
    assert "dry run, nothing uploaded" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "adapter_config.json",
                                                     "adapter_model.safetensors", "metrics.json", "spec.json"]
    assert "hostname" not in json.loads((out / "metrics.json").read_text())["provenance"]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "org/base-model" and config["revision"] == "1234abcd"


def test_the_card_says_what_the_cell_is(cell, tmp_path, no_network):
    from huggingface_hub import ModelCard
    from markdown_it import MarkdownIt

    assert cli.main(["publish", str(cell), "--repo", REPO, "--dry-run", "--out", str(tmp_path / "pub")]) == 0
    card = ModelCard.load(tmp_path / "pub" / "README.md")
    data = card.data.to_dict()
    assert data["base_model"] == "org/base-model" and data["datasets"] == ["google-research-datasets/go_emotions"]
    assert data["library_name"] == "peft" and data["pipeline_tag"] == "text-classification"
    metrics = json.loads((cell / "metrics.json").read_text())["test"]
    index = data["model-index"][0]["results"][0]
    assert index["metrics"][0]["type"] == "accuracy" and index["metrics"][0]["value"] == metrics["accuracy"]
    text = card.text
    for expected in ("| model | org/base-model (emogrid name: base) |", "| revision | 1234abcd (requested main) |",
                     "| revision | feedbeef |", "| labels (k = 2) | admiration, gratitude |",
                     "| examples n | 100 (train 80, validation 20); test 200 |", "| seed | 0 |",
                     "| lora.r | 8 |", "| train.lr | 0.005 |", "| method.name | lora |",
                     "| emogrid cell | `goemotions/base/lora/k2_n100/s0` |", "| trained with emogrid | 0.1.0 |",
                     "AutoPeftModelForSequenceClassification", f'from_pretrained("{REPO}")'):
        assert expected in text, expected
    # the interval is cells.csv's: the same bootstrap over the same test examples
    cells = aggregate(cell.parents[4], tmp_path / "tables")["cells"].set_index("cell_id")
    row = cells.loc["goemotions/base/lora/k2_n100/s0"]
    assert (f"| accuracy | {100 * row['test_accuracy']:.1f} | [{100 * row['test_accuracy_ci95_low']:.1f}, "
            f"{100 * row['test_accuracy_ci95_high']:.1f}] |") in text
    assert f"| macro-F1 | {100 * row['test_f1_macro']:.1f} | [{100 * row['test_f1_macro_ci95_low']:.1f}" in text
    html = MarkdownIt("commonmark").enable("table").render(text)  # it renders as Markdown
    assert "<h2>Test metrics</h2>" in html and html.count("<table>") == 5 and "<code>goemotions/base" in html


def test_upload_sends_the_folder_without_predictions_unless_asked(cell, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo",
                        lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))

    def upload_folder(self, **kw):
        calls.append(("upload", kw["repo_id"], sorted(p.name for p in __import__("pathlib").Path(
            kw["folder_path"]).iterdir())))
        return type("Info", (), {"commit_url": "https://hub/commit/1"})()

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    assert cli.main(["publish", str(cell), "--repo", REPO, "--private", "--out", str(tmp_path / "a")]) == 0
    assert calls[0] == ("create", REPO, {"repo_type": "model", "private": True, "exist_ok": True})
    assert calls[1][:2] == ("upload", REPO) and "predictions.jsonl" not in calls[1][2]
    assert cli.main(["publish", str(cell), "--repo", REPO, "--include-predictions", "--out", str(tmp_path / "b")]) == 0
    assert "predictions.jsonl" in calls[3][2]


def test_publish_refuses_what_it_cannot_publish(cell, tmp_path, no_network):
    import shutil

    with pytest.raises(ConfigError, match="--repo"):
        publish.run(publish_args(cell, "not a repo"))
    shutil.rmtree(cell / "adapter")
    with pytest.raises(EmogridError, match="no adapter or weights saved.*") as err:
        publish.run(publish_args(cell, REPO))
    assert "train.save_adapter: true" in err.value.hint
    with pytest.raises(EmogridError, match="metrics.json: missing"):
        publish.run(publish_args(tmp_path, REPO))


def publish_args(cell_dir, repo):
    import argparse

    return argparse.Namespace(cell_dir=str(cell_dir), repo=repo, out=None, dry_run=True, private=False,
                              include_predictions=False)
