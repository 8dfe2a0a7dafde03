"""Fetching for offline compute nodes (emogrid.data.fetch, workflow/rules/fetch.smk).

A hub cache laid out by the tests (tests/hub_cache.py) stands in for the network: every test
runs with HF_HUB_OFFLINE=1, so nothing here can reach a hub.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

import pytest

from emogrid.cli import main
from emogrid.data import fetch
from emogrid.planning import downloads
from tests.helpers import job_counts, require_data, snakemake
from tests.hub_cache import COMMIT, lay_out_model

REPO_ID = "test-org/tiny-bert"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "")  # no token: gated models must say how to log in
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")


@pytest.fixture()
def hub(tmp_path, tiny_models) -> Path:
    cache = tmp_path / "hub"
    lay_out_model(cache, REPO_ID, tiny_models["bert"])
    return cache


def test_fetch_writes_a_receipt_with_the_resolved_commit(hub, tmp_path):
    receipt_file = tmp_path / "fetch" / "models" / "tiny.json"
    code = main(["fetch", "--model", "tiny", "--spec", json.dumps({"id": REPO_ID, "revision": None}),
                 "--cache", str(hub), "--receipt", str(receipt_file)])
    assert code == 0
    receipt = fetch.read_receipt(receipt_file)
    assert receipt["id"] == REPO_ID and receipt["revision"] == "main" and receipt["commit"] == COMMIT
    assert (Path(receipt["snapshot"]) / "config.json").is_file()
    assert receipt["files"] >= 3 and receipt["bytes"] > 10_000
    # fetching again changes nothing, so jobs downstream never see new input
    before = receipt_file.stat().st_mtime_ns
    assert fetch.write_receipt(receipt_file, receipt) is False
    assert receipt_file.stat().st_mtime_ns == before


def test_a_model_missing_from_the_cache_offline_says_what_to_do(tmp_path, capsys):
    code = main(["fetch", "--model", "llama", "--spec", json.dumps({"id": "meta-llama/Llama-3.2-1B"}),
                 "--cache", str(tmp_path / "hub"), "--receipt", str(tmp_path / "r.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert "model 'llama' (meta-llama/Llama-3.2-1B@main) is not in the cache" in err
    assert "HF_HUB_OFFLINE is set" in err and "emogrid fetch" in err and "models.llama.path" in err
    assert "Traceback" not in err and not (tmp_path / "r.json").exists()


def _hub_error(cls, text="denied"):
    err = cls.__new__(cls)  # the hub's HTTP errors need a response object; only the type matters here
    Exception.__init__(err, text)
    return err


@pytest.mark.parametrize("kind, expected", [
    ("GatedRepoError", ["is gated and no hub token is set", "hf auth login",
                        "https://huggingface.co/meta-llama/Llama-3.2-1B", "models.llama.path"]),
    ("RepositoryNotFoundError", ["does not exist on the hub or is private", "hf auth login", "models.llama.id"]),
    ("RevisionNotFoundError", ["revision 'v9' does not exist", "models.llama.revision"]),
])
def test_hub_refusals_name_the_model_the_reason_and_the_fix(monkeypatch, tmp_path, kind, expected):
    import huggingface_hub
    from huggingface_hub import errors

    def refuse(*args, **kwargs):
        raise _hub_error(getattr(errors, kind))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    with pytest.raises(fetch.FetchError) as info:
        fetch.fetch_model("llama", {"id": "meta-llama/Llama-3.2-1B", "revision": "v9" if "Revision" in kind else None},
                          tmp_path)
    text = str(info.value)
    for part in expected:
        assert part in text, text


def test_fetch_by_hand_reads_the_study_and_skips_local_models(hub, tmp_path, tiny_models, capsys):
    from toy_data import write_toy_csv

    toy = write_toy_csv(tmp_path / "toy")  # a local dataset the config check can read
    study = tmp_path / "study.yaml"
    study.write_text(textwrap.dedent(f"""\
        datasets: {{toy: {{path: {toy}, text: text, label: label}}}}
        grid: {{datasets: [toy], labels: [3], samples: [60], models: [hubbed, local], methods: [lora]}}
        models:
          hubbed: {{id: {REPO_ID}}}
          local: {{path: {tiny_models['llama']}}}
        fetch: {{cache_dir: {hub}}}
        """))
    assert fetch.hub_models({"grid": {"models": ["hubbed", "local"]},
                             "models": {"hubbed": {"id": REPO_ID}, "local": {"path": "x", "id": "a/b"}}}) \
        == {"hubbed": {"id": REPO_ID, "revision": None}}
    code = main(["fetch", "--configfile", str(study), "--results", str(tmp_path / "results"),
                 "--model", "hubbed"])
    assert code == 0, capsys.readouterr().err
    assert f"commit {COMMIT}" in capsys.readouterr().out
    assert fetch.read_receipt(tmp_path / "results" / "fetch" / "models" / "hubbed.json")["commit"] == COMMIT
    with pytest.raises(fetch.EmogridError, match="not a hub model"):
        fetch.run(argparse.Namespace(configfile=[str(study)], model="local", dataset=None, spec=None,
                                     receipt=None, results=str(tmp_path / "results"), cache=None))


def test_training_loads_the_fetched_snapshot_offline_and_records_its_commit(hub, tmp_path, tiny_subset):
    from conftest_train import cell_spec

    from emogrid.study.grid import config_hash
    from emogrid.training import train

    receipt_file = tmp_path / "receipt.json"
    fetch.write_receipt(receipt_file, fetch.fetch_model("tiny", {"id": REPO_ID}, hub))
    spec = cell_spec(tmp_path / "unused", "lora", epochs=1)
    spec["model"] = {"name": "tiny", "id": REPO_ID, "path": None, "revision": None, "trust_remote_code": False}
    spec["config_hash"] = config_hash(spec)
    out = tmp_path / "run"
    args = argparse.Namespace(spec=json.dumps(spec), data=str(tiny_subset), out=str(out), attempt=1,
                              fetched=str(receipt_file))
    assert train.run(args) == 0, (out / "run.log").read_text()[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["provenance"]["model_source"] == {"id": REPO_ID, "revision": "main", "commit": COMMIT}
    assert metrics["provenance"]["config_hash"] == spec["config_hash"]  # the snapshot path is not hashed
    # spec.json: the spec as the study gave it (emogrid diff / publish), no machine-local snapshot path
    assert json.loads((out / "spec.json").read_text()) == spec


# the folder of the tests' studies: config.yaml (named first) gives their study.name
STUDY_RESULTS = "results/goemotions-qlora"

def _study(tmp_path, data, model_line):
    study = tmp_path / "study.yaml"
    study.write_text(textwrap.dedent(f"""\
        data: {{path: {data}}}
        grid: {{labels: [2], samples: [40], models: [tiny], methods: [lora], seeds: [0]}}
        models:
          tiny: {model_line}
        train: {{epochs: 1, batch_size: 8, eval_batch_size: 64, max_length: 32, patience: 0, precision: fp32}}
        resources: {{train: {{gpu: 0}}}}
        """))
    return study


def test_dag_fetches_hub_models_once_and_nothing_for_local_ones(tmp_path, tiny_models):
    data = require_data()
    hubbed = snakemake(tmp_path, "-n", "-p", configfiles=[_study(tmp_path, data, f"{{id: {REPO_ID}}}")])
    assert hubbed.returncode == 0, hubbed.stderr[-3000:]
    counts = job_counts(hubbed.stdout)
    assert counts["fetch_model"] == 1 and counts["train"] == 1
    # training runs offline and reads the receipt of the fetch job
    assert "HF_HUB_OFFLINE=1 python -m emogrid gpu-slot" in hubbed.stdout
    assert "--fetched=results/goemotions-qlora/fetch/models/tiny.json" in hubbed.stdout
    local = snakemake(tmp_path, "-n", configfiles=[_study(tmp_path, data, f"{{path: {tiny_models['bert']}}}")])
    assert local.returncode == 0 and "fetch_model" not in job_counts(local.stdout)


def test_default_study_under_the_slurm_profile_fetches_five_models_first(tmp_path):
    require_data()
    proc = snakemake(tmp_path, "-n", "--profile", str(Path(__file__).resolve().parents[2] / "profiles" / "slurm"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert counts["fetch_model"] == 5 and counts["train"] == 180
    # every training job waits for its model's fetch: none is ready to run before the fetches
    assert proc.stdout.index("rule fetch_model") < proc.stdout.index("rule train")


def test_missing_model_stops_its_cells_before_any_training_job(tmp_path):
    data = require_data()
    study = _study(tmp_path, data, "{id: test-org/not-downloaded}")
    proc = snakemake(tmp_path, "--cores", "1", configfiles=[study],
                     env={"HF_HUB_OFFLINE": "1", "EMOGRID_DATA_DIR": str(data)})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Error in rule fetch_model" in out
    log = (tmp_path / STUDY_RESULTS / "logs" / "fetch" / "models" / "tiny.log").read_text()
    assert "model 'tiny' (test-org/not-downloaded@main) is not in the cache" in log and "emogrid fetch" in log
    assert "rule train:" not in out and not (tmp_path / STUDY_RESULTS / "runs").exists()


def test_grid_trains_offline_from_the_fetched_snapshot(finished_grid):
    """The session's grid (tests/conftest_grid.py) takes tiny-bert from the hub cache through the
    fetch job, offline, and tiny-llama from a local folder."""
    from conftest_grid import HUB_MODEL, RESULTS

    work, proc = finished_grid.work, finished_grid.proc
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert HUB_MODEL == REPO_ID
    metrics = json.loads((work / RESULTS / "runs/goemotions/tiny-bert/lora/k2_n60/s0/metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert metrics["provenance"]["model_source"]["commit"] == COMMIT
    # the receipt's commit reaches the tables and the report's sources table too
    import pandas as pd

    cells = pd.read_csv(work / RESULTS / "tables" / "cells.csv", keep_default_na=False)
    hubbed = cells[cells["model"] == "tiny-bert"]
    assert len(hubbed) == 4 and list(hubbed["model_commit"]) == [COMMIT] * 4
    assert list(hubbed["model_source"]) == [REPO_ID] * 4
    sources = pd.read_csv(work / RESULTS / "tables" / "sources.csv", keep_default_na=False)
    model_row = sources[(sources["kind"] == "model") & (sources["name"] == "tiny-bert")].iloc[0]
    assert (model_row["id"], model_row["commit"], model_row["cells"]) == (REPO_ID, COMMIT, 4)
    data = finished_grid.env["EMOGRID_DATA_DIR"]
    assert sources[sources["kind"] == "dataset"].iloc[0]["id"].startswith(str(Path(data).resolve()))  # local: its path
    assert f"| model | tiny-bert | {REPO_ID} | main | {COMMIT} | 4 |" in \
        (work / RESULTS / "tables" / "sources.md").read_text()


def _imdb_like(n: int):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    words = ["great", "awful", "fine", "boring", "moving", "dull", "superb", "weak"]
    rows = {"text": [f"review {i}: a {words[i % 8]} film, {words[(i * 3) % 8]} acting" for i in range(n)],
            "label": [i % 2 for i in range(n)]}
    return datasets.Dataset.from_dict(rows, features=features)


def test_hub_datasets_of_a_study_are_the_ones_without_local_files(monkeypatch, tmp_path):
    from emogrid.study.config import finalize

    raw = {"grid": {"datasets": ["goemotions", "imdb"], "labels": [2], "samples": [40], "models": ["m"],
                    "methods": ["lora"]},
           "models": {"m": {"path": None, "id": "a/b"}}}
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)
    config = finalize(raw)
    assert fetch.hub_datasets(config) == {
        "goemotions": {"id": "google-research-datasets/go_emotions", "config": "simplified", "revision": None},
        "imdb": {"id": "stanfordnlp/imdb", "config": "plain_text", "revision": None}}
    monkeypatch.setenv("EMOGRID_DATA_DIR", str(require_data()))  # a local GoEmotions copy needs no fetch
    assert list(fetch.hub_datasets(config)) == ["imdb"]


def test_hub_dataset_is_fetched_once_and_read_offline_by_the_data_step(tmp_path, tiny_models):
    from tests.hub_cache import lay_out_dataset

    lay_out_dataset(tmp_path / STUDY_RESULTS / "hub", "stanfordnlp/imdb", "plain_text",
                    {"train": _imdb_like(200), "test": _imdb_like(60)})
    study = tmp_path / "study.yaml"
    study.write_text(textwrap.dedent(f"""\
        grid: {{datasets: [imdb], labels: [2], samples: [40], models: [tiny], methods: [lora], seeds: [0]}}
        models:
          tiny: {{path: {tiny_models['bert']}}}
        train: {{epochs: 1, batch_size: 8, eval_batch_size: 64, max_length: 32, patience: 0, precision: fp32}}
        resources: {{train: {{gpu: 0}}}}
        """))
    target = f"{STUDY_RESULTS}/data/imdb/k2_n40_s0/manifest.json"
    proc = snakemake(tmp_path, "--cores", "1", target, configfiles=[study], env={"HF_HUB_OFFLINE": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "localrule fetch_dataset:" in out
    manifest = json.loads((tmp_path / target).read_text())
    assert manifest["source"]["kind"] == "hub" and manifest["source"]["id"] == "stanfordnlp/imdb"
    assert manifest["source"]["commit"] == COMMIT
    assert manifest["source"]["splits"]["test"] == "test"  # the official test split, from the snapshot


def test_planner_reports_download_sizes_per_model_and_in_total(monkeypatch, hub, tmp_path, tiny_models):
    from types import SimpleNamespace

    import huggingface_hub

    config = {"grid": {"models": ["bert-base", "fetched", "local", "listed"]},
              "models": {"bert-base": {"id": "google-bert/bert-base-uncased"}, "fetched": {"id": REPO_ID},
                         "local": {"path": str(tiny_models["bert"])}, "listed": {"id": "org/listed"}}}
    receipt = fetch.fetch_model("fetched", {"id": REPO_ID}, hub)
    fetch.write_receipt(fetch.receipt_path(tmp_path, "models", "fetched"), receipt)
    rows = {r["model"]: r for r in downloads.download_rows(config, tmp_path, online=False)}
    # bert-base-uncased's model.safetensors is 440 MB; the bundled config's estimate (no MLM head)
    assert 400 < rows["bert-base"]["download_mb"] < 425 and rows["bert-base"]["source"].startswith("estimate")
    assert rows["fetched"]["download_mb"] == pytest.approx(receipt["bytes"] / 2**20)
    assert rows["local"]["download_mb"] == 0.0
    assert rows["listed"]["download_mb"] != rows["listed"]["download_mb"]  # NaN: no config anywhere offline

    files = [SimpleNamespace(rfilename="model.safetensors", size=300 * 2**20),
             SimpleNamespace(rfilename="pytorch_model.bin", size=300 * 2**20),  # never fetched
             SimpleNamespace(rfilename="tokenizer.json", size=2 * 2**20)]
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info",
                        lambda self, repo_id, **kw: SimpleNamespace(siblings=files))
    online = {r["model"]: r for r in downloads.download_rows(config, tmp_path, online=True)}
    assert online["listed"]["download_mb"] == 302.0 and online["listed"]["source"] == "hub file list"

    from emogrid.planning.report import downloads_markdown

    table = downloads_markdown({**config, "grid": {"models": ["bert-base", "local"]}}, tmp_path)
    assert "| bert-base | google-bert/bert-base-uncased | main | 4" in table and "**total**" in table
