"""The baseline methods `head` (a linear probe) and `untrained` (evaluated as loaded): what
trains, their planned counts, the grid, and their rows in the tables and figures."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest_train import cell_spec

from emogrid.study.grid import config_hash
from emogrid.training import train
from emogrid.training.provenance import now


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here: one torch thread (conftest_train.one_torch_thread)."""


def _run(spec: dict, data, out) -> tuple[dict, dict, dict]:
    """(metrics.json, parameters before training, the model after), via run_cell."""
    spec["config_hash"] = config_hash(spec)
    seen = {}

    def on_model(model):
        seen["model"] = model
        seen["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}

    train.run_cell(spec, data, out, {"batch_size": 8, "grad_accum": 1}, now(), on_model=on_model)
    return json.loads((out / "metrics.json").read_text()), seen["before"], seen["model"]


def _head_numel(family: str, hidden: int, k: int) -> int:
    """The head's parameters, by hand: decoders a bias-free score (hidden x k); BERT its
    classifier (hidden x k + k) and pooler (hidden x hidden + hidden)."""
    return hidden * k if family == "llama" else hidden * k + k + hidden * hidden + hidden


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_head_trains_only_the_classification_head(tiny_models, tiny_subset, tmp_path, family):
    m, before, model = _run(cell_spec(tiny_models[family], "head", epochs=2), tiny_subset, tmp_path)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    heads = {"score"} if family == "llama" else {"classifier", "pooler"}
    assert trainable and all(heads & set(n.split(".")) for n in trainable)
    assert changed == trainable  # every head tensor moved, nothing else did
    eff = m["efficiency"]
    assert eff["trainable_params"] == _head_numel(family, 64, 3) == sum(model.get_parameter(n).numel()
                                                                        for n in trainable)
    assert eff["optimizer_steps"] == 2 * 7 and m["status"] == "ok"  # 54 train rows / batch 8, 2 epochs


def test_untrained_is_evaluated_as_loaded_without_a_step(tiny_models, tiny_subset, tmp_path):
    spec = cell_spec(tiny_models["llama"], "untrained", epochs=2)
    m, before, model = _run(spec, tiny_subset, tmp_path / "a")
    assert all(torch.equal(before[n], p.detach()) for n, p in model.named_parameters())
    assert not any(p.requires_grad for p in model.parameters())
    eff = m["efficiency"]
    assert (eff["optimizer_steps"], eff["epochs_run"], eff["trainable_params"]) == (0, 0, 0)
    assert m["status"] == "ok" and 0.0 <= m["test"]["accuracy"] <= 1.0
    # the scores are the loaded model's own: its logits on the test split, computed directly
    from emogrid.training.cell_data import load_data

    data = load_data(tiny_subset, spec)
    preds = [json.loads(line) for line in (tmp_path / "a" / "predictions.jsonl").read_text().splitlines()]
    tok = __import__("emogrid.models.loading", fromlist=["x"]).load_tokenizer(tiny_models["llama"], "llama")
    with torch.no_grad():
        for row, pred in list(zip(data["test"], [p for p in preds if p["split"] == "test"]))[:5]:
            logits = model(**tok(row["text"], return_tensors="pt", truncation=True, max_length=64)).logits
            assert pred["pred"] == [int(logits.argmax())]
    # the same seed draws the same fresh head: a second run scores identically
    m2, _, _ = _run(copy.deepcopy(spec), tiny_subset, tmp_path / "b")
    assert m2["test"] == m["test"] and m2["val"] == m["val"]


def test_a_training_method_with_zero_steps_still_fails(tiny_models, tiny_subset, tmp_path):
    """The zero-step rule exempts only a method that trains nothing: `head` with 0 epochs fails."""
    spec = cell_spec(tiny_models["bert"], "head", epochs=0)
    spec["config_hash"] = config_hash(spec)
    assert train.run(__import__("argparse").Namespace(spec=json.dumps(spec), data=str(tiny_subset),
                                                      out=str(tmp_path), attempt=1)) == 2
    assert "zero optimizer steps" in json.loads((tmp_path / "failure.json").read_text())["error"]["message"]


def test_baselines_are_planned_with_the_models_exact_counts(tiny_models):
    from emogrid.planning.memory import plan_cell_memory
    from tests.plan_specs import make_spec

    model = {"name": "tiny-llama", "id": None, "path": str(tiny_models["llama"])}

    def plan(method):
        spec = make_spec(model, method, k=3)
        spec["train"].update(batch_size=64, max_length=128)  # activations big enough to show in MiB
        return plan_cell_memory(spec, device="cpu", token_stats={"max": 128, "source": "test"})

    head, untrained, lora = plan("head"), plan("untrained"), plan("lora")
    assert head["trainable_params"] == 64 * 3 and untrained["trainable_params"] == 0
    # nothing trains: nothing is saved for a backward pass; the probe saves only the head's input
    assert untrained["activations_mb"] == 0 < head["activations_mb"] < lora["activations_mb"]
    # the same model: LoRA adds its adapters and peft's trainable copy of the head (modules_to_save)
    assert head["total_params"] == untrained["total_params"] == lora["total_params"] - lora["trainable_params"]


def test_untrained_ignores_sweeps_of_what_only_shapes_training():
    from emogrid.study.config import finalize
    from emogrid.study.grid import expand_cells

    cells = expand_cells(finalize({
        "grid": {"models": ["m"], "methods": ["head", "untrained"], "labels": [2], "samples": [800], "seeds": [0]},
        "models": {"m": {"id": "google-bert/bert-base-uncased"}},
        "train": {"lr": [1.0e-4, 1.0e-3], "max_length": [64, 128]}}))
    by_method = {m: [c for c in cells if c.axes["method"] == m] for m in ("head", "untrained")}
    assert len(by_method["head"]) == 4  # lr x max_length
    assert [c.axes.get("train.max_length") for c in by_method["untrained"]] == [64, 128]  # evaluation reads it
    assert all("train.lr" not in c.axes and c.spec["train"]["lr"] == 1.0e-4 for c in by_method["untrained"])


def test_baselines_appear_in_the_tables_and_figures(tiny_models, tiny_subset, tmp_path):
    """Trained for real (tiny llama), aggregated: a row each in cells.csv and the efficiency
    table, a panel each in the heatmap, a point or floor line each in the trade-offs figure."""
    import pandas as pd

    from emogrid.report import aggregate as A
    from emogrid.report.figures.heatmap import study_heatmap
    from emogrid.report.figures.tradeoffs import tradeoffs

    runs = tmp_path / "runs"
    for method in ("lora", "head", "untrained"):
        spec = cell_spec(tiny_models["llama"], method, epochs=1)
        _run(spec, tiny_subset, runs / spec["cell_id"])
    result = A.aggregate(runs, tmp_path / "tables")
    cells = pd.read_csv(tmp_path / "tables" / "cells.csv")
    assert sorted(cells["method"]) == ["head", "lora", "untrained"] and (cells["status"] == "ok").all()
    efficiency = (tmp_path / "tables" / "efficiency.md").read_text()
    assert "| llama | head | 192 |" in efficiency and "| llama | untrained | 0 |" in efficiency
    data = {"summary": result["summary"], "cells": result["cells"], "levels": result["levels"]}
    _fig, info = study_heatmap(data)
    assert set(info["panels"]) == {"lora", "head", "untrained"}
    fig = tradeoffs(data)
    drawn = [line for ax in fig.axes for line in ax.get_lines()]
    assert len(drawn) >= 3 * 2  # three arms on each efficiency axis (untrained as a floor where log)


def test_untrained_is_a_floor_line_on_a_log_axis(tmp_path):
    """Trade-offs with parameter counts spanning decades (log axis): the untrained arm's 0
    trainable parameters and 0 s of training cannot sit on it, so it is a dotted floor line at
    its score, named under the figure."""
    import fixtures_results as F

    from emogrid.report import aggregate as A
    from emogrid.report.figures.tradeoffs import tradeoffs

    runs = tmp_path / "runs"
    for method, acc in (("full", 0.8), ("lora", 0.7), ("untrained", 0.4)):
        for seed in (0, 1, 2):
            cid = F.write_cell(runs, "goemotions", "tiny-a", method, "", {}, 2, 100, seed, acc + 0.01 * seed)
            if method == "untrained":
                path = runs / cid / "metrics.json"
                m = json.loads(path.read_text())
                m["efficiency"].update(trainable_params=0, trainable_percent=0.0, train_seconds=0.0)
                path.write_text(json.dumps(m))
    result = A.aggregate(runs, tmp_path / "tables")
    fig = tradeoffs({"summary": result["summary"], "cells": result["cells"], "levels": result["levels"]})
    params_ax = next(ax for ax in fig.axes if ax.get_xlabel() == "trainable parameters")
    assert params_ax.get_xscale() == "log"  # 1M (full) vs 10k (lora)
    floors = [line for line in params_ax.get_lines() if line.get_linestyle() == ":"]
    assert [tuple(line.get_ydata()) for line in floors] == [(pytest.approx(41.0), pytest.approx(41.0))]
    assert "Dotted lines: untrained" in " ".join(t.get_text() for t in fig.texts)
