"""A tuned study in the report: tuning.csv, the tuning compute beside the study's in the efficiency
table (the full search only under halving), the study tables' "tuned on validation" title and
the Tuning figure, from choice files as `emogrid tune-select` writes them."""

from __future__ import annotations

import pandas as pd

from emogrid.report.paper_tables.efficiency import efficiency_frame, render_efficiency
from emogrid.results.tuning import caption_suffix, tuning_compute, tuning_frame


def candidate(label, lr, score, rank, healthy=True, states=("ok",)):
    return {"label": label, "values": {"train.lr": lr}, "score": score, "rank": rank, "healthy": healthy,
            "states": list(states), "cells": 1}


def choice(method, halving=False):
    last = {"rung": 1 if halving else 0, "budget": "full", "metric": "accuracy",
            "candidates": [candidate("train.lr=0.001", 1e-3, 0.8, 1), candidate("train.lr=10", 10.0, 0.3, 2, False,
                                                                                ("diverged",))]}
    rungs = [{"rung": 0, "budget": "1of3", "metric": "accuracy", "kept": ["train.lr=0.001", "train.lr=10"],
              "candidates": [candidate("train.lr=0.001", 1e-3, 0.7, 1), candidate("train.lr=10", 10.0, 0.3, 2),
                             candidate("train.lr=1e-05", 1e-5, 0.2, 3)]}] if halving else []
    seconds = 30.0 if halving else 20.0
    return {**last, "group": f"goemotions/m/{method}", "keys": ["train.lr"], "methods": [method],
            "axes": {"dataset": "goemotions", "model": "m", "method": method, "arm": ""}, "rungs": rungs,
            "choice": {"train.lr": 1e-3}, "choice_label": "train.lr=0.001",
            "total_compute": {"cells": 5 if halving else 2, "train_seconds": seconds, "optimizer_steps": 100,
                              "full_search_seconds": 45.0 if halving else seconds, "full_search_steps": 150}}


def cells_frame():
    rows = [{"cell_id": f"goemotions/m/{m}/k4_n800/s{s}", "dataset": "goemotions", "model": "m", "method": m,
             "variant": "", "labels": 4, "samples": 800, "seed": s, "status": "ok", "train_seconds": 10.0,
             "trainable_params": 100, "trainable_percent": 1.0, "peak_memory_mb": 500.0,
             "train_samples_per_second": 50.0} for m in ("full", "lora") for s in (0, 1)]
    return pd.DataFrame(rows)


def test_tuning_csv_rows_one_per_rung_and_candidate():
    frame = tuning_frame([choice("full"), choice("lora", halving=True)])
    assert len(frame) == 2 + 3 + 2
    assert frame["chosen"].sum() == 2 and set(frame.loc[frame["chosen"], "rung"]) == {0, 1}
    assert list(frame.columns[-1:]) == ["value.train.lr"]
    assert set(frame.loc[~frame["healthy"].astype(bool), "states"]) == {"diverged"}
    assert tuning_frame([]).columns.tolist()[:3] == ["group", "dataset", "model"]


def test_efficiency_sets_tuning_compute_beside_the_study():
    levels = {"model": ["m"], "method": ["full", "lora"]}
    plain = efficiency_frame(cells_frame(), levels, tuning_compute([choice("full"), choice("lora")]))
    assert plain[["final_seconds", "tuning_seconds"]].values.tolist() == [[20.0, 20.0], [20.0, 20.0]]
    assert "full_search_seconds" not in plain  # no halving: the search was the full one
    halved = efficiency_frame(cells_frame(), levels, tuning_compute([choice("full"), choice("lora", halving=True)]))
    assert halved.set_index("method").loc["lora", "full_search_seconds"] == 45.0
    md = render_efficiency(halved)["md"]
    assert "Tuning train time, total (s)" in md and "Full search, est. (s)" in md
    untuned = efficiency_frame(cells_frame(), levels, tuning_compute([]))
    assert "tuning_seconds" not in untuned and "Tuning" not in render_efficiency(untuned)["md"]


def test_study_titles_name_the_tuned_keys():
    assert caption_suffix([choice("full")]) == "; tuned on validation: train.lr"
    assert caption_suffix([]) == ""


def test_tuning_figure(tmp_path):
    from emogrid.report.figures.tuning import tuning_figure

    path = tmp_path / "tuning.csv"
    tuning_frame([choice("full"), choice("lora", halving=True)]).to_csv(path, index=False)
    fig = tuning_figure(path)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["goemotions/m/full", "goemotions/m/lora"]
    assert fig.axes[0].get_xscale() == "log"
    tuning_frame([]).to_csv(path, index=False)
    assert "tunes nothing" in tuning_figure(path).axes[0].texts[0].get_text()
