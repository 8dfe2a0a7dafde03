"""Example-level statistics on results trees with predictions: one-seed intervals, n marks,
paired tests on shared test examples, no pooled claims over a shared test set, did-not-learn."""

from __future__ import annotations

import math

import fixtures_results as F
import numpy as np
import pandas as pd
import pytest

from emogrid.report import aggregate as A
from emogrid.results import stats

# one shared test split (as GoEmotions' official test set): 75% class 0 -> majority baseline 0.75
TEST_GOLD = np.array([0] * 225 + [1] * 75)
VAL_GOLD = np.array([0, 1] * 20)


def _tree(runs, models, seeds=(0,), samples=(100,)):
    for m, (name, acc) in enumerate(models.items()):
        for n in samples:
            for seed in seeds:
                rng = np.random.default_rng(1000 * m + 10 * n + seed)
                test = (np.zeros_like(TEST_GOLD) if acc is None
                        else F.scored_predictions(TEST_GOLD, acc, rng))
                val = F.scored_predictions(VAL_GOLD, 0.8, rng)
                F.write_scored_cell(runs, "goemotions", name, "lora", 2, n, seed,
                                    {"val": VAL_GOLD, "test": TEST_GOLD}, {"val": val, "test": test})
    return runs


@pytest.fixture(scope="module")
def one_seed(tmp_path_factory):
    root = tmp_path_factory.mktemp("one_seed")
    _tree(root / "runs", {"strong": 0.95, "weak": 0.80, "chance": None})
    return A.aggregate(root / "runs", root / "tables") | {"root": root}


def test_one_seed_cells_get_example_intervals_and_n1_marks(one_seed):
    cells = one_seed["cells"].set_index("model")
    strong = cells.loc["strong"]
    # the per-cell interval of accuracy is Wilson's on the 300 test examples
    assert strong["test_accuracy_ci95_low"] < strong["test_accuracy"] < strong["test_accuracy_ci95_high"]
    low, high = stats.wilson_interval(round(300 * strong["test_accuracy"]), 300)
    assert (strong["test_accuracy_ci95_low"], strong["test_accuracy_ci95_high"]) == pytest.approx((low, high))
    half = (strong["test_accuracy_ci95_high"] - strong["test_accuracy_ci95_low"]) / 2
    binomial_half = 1.96 * math.sqrt(strong["test_accuracy"] * (1 - strong["test_accuracy"]) / 300)
    assert half == pytest.approx(binomial_half, rel=0.25)
    s = one_seed["summary"]
    row = s[(s.model == "strong") & (s.metric == "test_accuracy")].iloc[0]
    assert row["n"] == 1 and math.isnan(row["ci95_t_half"])  # no t interval with one seed ...
    assert row["ci95_boot_low"] == pytest.approx(strong["test_accuracy_ci95_low"])  # ... a bootstrap one
    md = (one_seed["root"] / "tables" / "study_accuracy.md").read_text()
    assert "n = 1 seed per cell" in md.splitlines()[0] and "Wilson score interval on the test examples" in md
    assert f"{100 * strong['test_accuracy']:.1f} [{100 * strong['test_accuracy_ci95_low']:.1f}," in md


def test_chance_level_cell_is_flagged_did_not_learn(one_seed):
    """A constant predictor (kappa 0) did not learn; strong and weak did."""
    cells = one_seed["cells"].set_index("model")
    assert cells.loc["chance", "test_accuracy"] == pytest.approx(0.75)
    assert cells.loc["chance", "test_majority_accuracy"] == pytest.approx(0.75)
    assert cells.loc["chance", "test_kappa"] == 0.0
    assert bool(cells.loc["chance", "did_not_learn"]) and not bool(cells.loc["strong", "did_not_learn"])
    assert not bool(cells.loc["weak", "did_not_learn"])
    md = (one_seed["root"] / "tables" / "study_accuracy.md").read_text()
    chance_row = next(line for line in md.splitlines() if line.startswith("| chance"))
    strong_row = next(line for line in md.splitlines() if line.startswith("| strong"))
    assert "†" in chance_row and "†" not in strong_row
    assert "| *(baseline)* | *majority class* | 75.0 |" in md


def test_one_seed_comparison_uses_mcnemar_and_bold_needs_significance(one_seed):
    md = (one_seed["root"] / "tables" / "study_accuracy.md").read_text()
    strong_row = next(line for line in md.splitlines() if line.startswith("| strong"))
    assert "**" in strong_row  # 0.95 vs 0.80 on 300 shared examples: significant after Holm
    cells = one_seed["cells"].set_index("model")
    # McNemar on the discordant pairs, by hand
    from emogrid.results.uncertainty import read_outcomes

    runs = one_seed["root"] / "runs"
    a = read_outcomes(runs / cells.loc["strong", "cell_id"] / "predictions.jsonl")["test"]
    b = read_outcomes(runs / cells.loc["weak", "cell_id"] / "predictions.jsonl")["test"]
    ra, rb = a[1] == a[2], b[1] == b[2]
    p = stats.mcnemar_exact(int(np.sum(ra & ~rb)), int(np.sum(~ra & rb)))
    assert p < 1e-4


def test_pooled_comparison_over_one_shared_test_set_claims_nothing(tmp_path):
    """Two arms, 2 sample sizes x 5 seeds = 10 matched pairs, all scored on ONE test set, where
    arm a is better in every pair by a hair. The old pooled paired t test made that a tiny
    p-value; pooled rows must not claim significance."""
    runs = tmp_path / "runs"
    rng = np.random.default_rng(7)
    base = F.scored_predictions(TEST_GOLD, 0.85, rng)
    for n in (100, 200):
        for seed in range(5):
            b = base.copy()
            a = base.copy()
            wrong = np.flatnonzero(a != TEST_GOLD)
            a[wrong[seed]] = TEST_GOLD[wrong[seed]]  # a fixes exactly one more example
            val = F.scored_predictions(VAL_GOLD, 0.8, rng)
            for method, pred in (("a", a), ("b", b)):
                F.write_scored_cell(runs, "goemotions", "m", method, 2, n, seed,
                                    {"val": VAL_GOLD, "test": TEST_GOLD}, {"val": val, "test": pred})
    c = A.aggregate(runs, tmp_path / "tables", config={"report": {"reference_method": "b"}}, expected=[])["comparisons"]
    acc = c[c.metric == "test_accuracy"]
    pooled = acc[acc.scope == "study"].iloc[0]
    assert pooled["n_pairs"] == 10 and pooled["wins_a"] == 10 and pooled["diff_mean"] > 0
    assert math.isnan(pooled["p_value"]) and math.isnan(pooled["ci95_t_low"])
    assert pooled["sig_a"] == 0 and "not independent" in pooled["note"]
    # per subset: 5 seeds, one example apart on 300: the seed t test would say "significant"
    # (identical differences); the paired bootstrap over shared examples does not
    subset = acc[acc.scope == "subset"]
    assert (subset["p_adj"] > 0.05).all() and not subset["significant"].any()
    assert subset["test"].str.startswith("paired over seeds: seed spread (t) + shared-example").all()
    assert (subset["boot_low"] <= 0).all() and (subset["boot_high"] > 0).all()


def test_one_seed_method_comparison_is_mcnemar_exact(tmp_path):
    runs = tmp_path / "runs"
    rng = np.random.default_rng(3)
    preds = {"a": F.scored_predictions(TEST_GOLD, 0.92, rng), "b": F.scored_predictions(TEST_GOLD, 0.80, rng)}
    val = F.scored_predictions(VAL_GOLD, 0.8, rng)
    for method, pred in preds.items():
        F.write_scored_cell(runs, "goemotions", "m", method, 2, 100, 0,
                            {"val": VAL_GOLD, "test": TEST_GOLD}, {"val": val, "test": pred})
    c = A.aggregate(runs, tmp_path / "tables")["comparisons"]
    row = c[(c.scope == "subset") & (c.metric == "test_accuracy")].iloc[0]
    ra, rb = preds["a"] == TEST_GOLD, preds["b"] == TEST_GOLD
    assert row["test"] == "these two runs (one seed each): McNemar exact" and row["n_pairs"] == 1
    assert row["claim"] == "these two runs"
    assert row["p"] == pytest.approx(stats.mcnemar_exact(int(np.sum(ra & ~rb)), int(np.sum(~ra & rb))))
    assert row["boot_low"] > 0 and bool(row["significant"])
    f1 = c[(c.scope == "subset") & (c.metric == "test_f1_macro")].iloc[0]
    assert f1["test"].startswith("these two runs (one seed each): bootstrap SE") and f1["p"] > 0


def test_replication_table_and_figure_on_a_synthetic_tree(tmp_path):
    from emogrid.report.figures.replication import replication_figure

    runs = tmp_path / "runs"
    rng = np.random.default_rng(11)
    for seed in (0, 1):
        val = F.scored_predictions(VAL_GOLD, 0.9, rng)
        F.write_scored_cell(runs, "goemotions", "m", "qlora", 2, 100, seed,
                            {"val": VAL_GOLD, "test": TEST_GOLD},
                            {"val": val, "test": F.scored_predictions(TEST_GOLD, 0.9, rng)})
    ref = tmp_path / "ref.csv"
    # an old file (no n_eval / evidence columns) stays valid: our evaluation-set size is assumed
    ref.write_text("study,dataset,model,method,labels,samples,split,metric,value\n"
                   "paper,goemotions,m,qlora,2,100,val,accuracy,90.0\n"
                   "paper,goemotions,m,qlora,2,100,val,accuracy,20.0\n"
                   "paper,goemotions,m,qlora,4,100,val,accuracy,70.0\n"
                   "paper,goemotions,other-model,qlora,2,100,val,accuracy,70.0\n")
    result = A.aggregate(runs, tmp_path / "tables", config={"grid": {"models": ["m"], "methods": ["qlora"]},
                                                            "models": {"m": {"id": "x/m"}},
                                                            "report": {"reference": str(ref)}},
                         expected=[])
    rep = result["replication"]
    s = result["summary"]
    val = s[s.metric == "val_accuracy"].iloc[0]
    first = rep.iloc[0]
    assert first["n"] == 2 and first["measured"] == pytest.approx(100 * val["mean"])
    assert first["low"] == pytest.approx(100 * val["ci95_boot_low"]) and first["interval"] == "example-aware"
    assert first["diff"] == pytest.approx(100 * val["mean"] - 90.0)
    assert first["n_eval"] == 40 and first["n_eval_source"].startswith("ours")
    # the prediction interval: our mean's parts + one new run's seed variance + the paper's binomial noise
    seed = math.sqrt(val["se_seed"] ** 2 + val["std"] ** 2)
    examples = math.sqrt(val["se_examples"] ** 2 + stats.agresti_coull_variance(0.9, 40))
    half = 100 * stats.combined_half_width(seed, examples, 1)
    assert (first["diff_low"], first["diff_high"]) == pytest.approx((first["diff"] - half, first["diff"] + half))
    assert first["verdict"] == ("consistent" if first["diff_low"] <= 0 <= first["diff_high"] else "differs")
    assert rep.iloc[1]["verdict"] == "differs"  # 20% is far off
    assert rep.iloc[2]["status"] == "not measured"
    assert len(rep) == 3  # a model this study does not have is left out
    md = (tmp_path / "tables" / "replication.md").read_text()
    assert "| paper | m | qlora | 2 | 100 | validation accuracy | 90.00 | 40 (ours) |" in md and "not measured" in md
    fig = replication_figure(tmp_path / "tables" / "replication.csv")
    assert fig.axes[0].get_title() == "Replication: validation accuracy"
    bad = tmp_path / "bad.csv"
    bad.write_text("study,model\nx,y\n")
    from emogrid.errors import ConfigError

    with pytest.raises(ConfigError, match="bad.csv lacks column"):
        A.aggregate(runs, tmp_path / "t2", config={"report": {"reference": str(bad)}}, expected=[])


def test_batched_set_replicates_equal_the_per_cell_computation():
    from emogrid.results import uncertainty as U

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 4, 300)
    members = [(f"c{i}", "test", gold, np.where(rng.random(300) < 0.7, gold, rng.integers(0, 4, 300)), 4)
               for i in range(3)]
    weights = U.bootstrap_weights(300, rng)
    assert weights.shape == (stats.RESAMPLES, 300) and (weights.sum(axis=1) == 300).all()
    for member, batched in zip(members, U.set_replicates(weights, members)):
        single = U.weighted_replicates(weights, member[2], member[3], 4)
        assert np.allclose(batched["accuracy"], single["accuracy"])
        assert np.allclose(batched["f1_macro"], single["f1_macro"])
    # and the unweighted point estimate is the plain metric
    ones = np.ones((1, 300), dtype=np.float32)
    point = U.set_replicates(ones, members[:1])[0]
    assert point["accuracy"][0] == pytest.approx((members[0][3] == gold).mean())


def test_report_split_val_is_the_papers_view(tmp_path):
    """report: {split: val} -> the study tables and heatmap show validation numbers, titled so."""
    from emogrid.report import plots as P
    from emogrid.report.figures.heatmap import study_heatmap

    runs = _tree(tmp_path / "runs", {"strong": 0.95, "weak": 0.80})
    result = A.aggregate(runs, tmp_path / "tables", expected=[],
                         config={"grid": {"models": ["x"], "methods": ["lora"]},
                                 "report": {"split": "val", "metric": "accuracy"}})
    md = (tmp_path / "tables" / "study_accuracy.md").read_text()
    assert md.startswith("**Validation accuracy (%)**")
    cells = result["cells"].set_index("model")
    strong = (
        f"{100 * cells.loc['strong', 'val_accuracy']:.1f} [{100 * cells.loc['strong', 'val_accuracy_ci95_low']:.1f},"
    )
    assert strong in md  # validation intervals were computed because the report shows them
    assert (tmp_path / "tables" / "method_comparisons.md").read_text().startswith(
        "**Paired comparisons per subset** — validation split")
    data = P.load_tables(tmp_path / "tables")
    assert P.report_metric(data) == "val_accuracy"
    fig, _ = study_heatmap(data, P.report_metric(data))
    assert fig._suptitle.get_text().startswith("Validation accuracy (%)")


def test_multilabel_cells_get_example_intervals_too(tmp_path):
    """Multi-label cells have no confusion matrix: intervals come from predictions.jsonl
    (exact-match accuracy, macro- and micro-F1 per resample), and one seed is enough."""
    import json

    from sklearn.metrics import f1_score

    from emogrid.results import uncertainty as U
    from emogrid.training.metrics import compute

    rng = np.random.default_rng(4)
    labels = ["a", "b", "c", "d"]
    gold = rng.random((200, 4)) < 0.3
    gold[~gold.any(axis=1), 0] = True
    pred = np.where(rng.random((200, 4)) < 0.85, gold, ~gold)
    val_gold, val_pred = gold[:40], pred[:40]
    cid = "goemotions-multi/m/lora/k4_n100/s0"
    run = tmp_path / "runs" / cid
    run.mkdir(parents=True)
    metrics = {"cell": {"dataset": "goemotions-multi", "model": "m", "method": "lora", "labels": 4,
                        "samples": 100, "seed": 0}, "cell_id": cid, "status": "ok",
               "val": compute(val_gold.astype(int), val_pred.astype(int), labels, True),
               "test": compute(gold.astype(int), pred.astype(int), labels, True),
               "efficiency": F._efficiency("tiny-a", "lora", 100),
               "provenance": {"versions": {}, "device": "cpu", "config_hash": "abc"}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    rows = [{"id": f"{s}-{i}", "split": s, "gold": np.flatnonzero(g).tolist(), "pred": np.flatnonzero(p).tolist(),
             "probs": [0.5] * 4}
            for s, G, P in (("val", val_gold, val_pred), ("test", gold, pred)) for i, (g, p) in enumerate(zip(G, P))]
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = U.read_outcomes(run / "predictions.jsonl")["test"]
    assert out[1].shape == (200, 4) and (out[1] == gold).all() and (out[2] == pred).all()
    ones = np.ones((1, 200), dtype=np.float32)
    point = U.multilabel_replicates(ones, gold, pred)
    assert point["f1_macro"][0] == pytest.approx(f1_score(gold, pred, average="macro", zero_division=0))
    assert point["f1_micro"][0] == pytest.approx(f1_score(gold, pred, average="micro", zero_division=0))
    assert point["accuracy"][0] == pytest.approx((gold == pred).all(axis=1).mean())
    cells = A.aggregate(tmp_path / "runs", tmp_path / "tables")["cells"].iloc[0]
    for metric in ("accuracy", "f1_macro", "f1_micro"):
        low, high = cells[f"test_{metric}_ci95_low"], cells[f"test_{metric}_ci95_high"]
        assert low < cells[f"test_{metric}"] < high, metric
    assert pd.isna(cells["did_not_learn"])  # multi-label: not checked (no single gold class)
    md = (tmp_path / "tables" / "study_accuracy.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| m |"))
    assert row.rstrip(" |").endswith("n.c.") and "n.c.: learning not checked (multi-label)" in md


def test_best_must_beat_every_row_not_only_the_runner_up(tmp_path):
    """A 85 %, B 81 %, C 80 % on the same 300 examples (one seed): A vs B 12/0 discordant
    (McNemar p = 4.9e-4), A vs C 52/37 (p = 0.137). The old mark (best vs runner-up) made A
    bold; A does not beat C, so nothing is bold, A and C tie and B carries no mark."""
    gold = TEST_GOLD
    a_wrong = np.arange(45)                       # A: 255 / 300 right
    b_wrong = np.arange(57)                       # B: A's 45 errors + 12 more
    c_wrong = np.concatenate([np.arange(37, 45), np.arange(57, 109)])  # C: 8 of A's errors + 52 others
    preds = {}
    for method, wrong in (("full", a_wrong), ("lora", b_wrong), ("ia3", c_wrong)):
        pred = gold.copy()
        pred[wrong] = 1 - gold[wrong]
        preds[method] = pred
    ra, rb, rc = (preds[m] == gold for m in ("full", "lora", "ia3"))
    assert (np.sum(ra & ~rb), np.sum(~ra & rb), np.sum(ra & ~rc), np.sum(~ra & rc)) == (12, 0, 52, 37)
    assert stats.mcnemar_exact(52, 37) == pytest.approx(0.137, abs=0.001)
    for method, pred in preds.items():
        F.write_scored_cell(tmp_path / "runs", "goemotions", "m", method, 2, 100, 0,
                            {"val": VAL_GOLD, "test": gold}, {"val": VAL_GOLD, "test": pred})
    config = {"grid": {"models": ["m"], "methods": ["full", "lora", "ia3"]}}
    A.aggregate(tmp_path / "runs", tmp_path / "tables", config=config, expected=[])
    md = (tmp_path / "tables" / "study_accuracy.md").read_text()
    body = [line for line in md.splitlines() if line.startswith("| m ")]
    rows = {line.split("|")[2].strip(): line.split("|")[3].strip() for line in body}
    assert rows == {"full": "85.0 [80.5, 88.6] ≈", "lora": "81.0 [76.2, 85.0]", "ia3": "80.0 [75.1, 84.1] ≈"}
    assert not any("**" in line for line in body) and "compare these trained runs, not the methods" in md
    comp = (tmp_path / "tables" / "method_comparisons.md").read_text()
    # one family for the table and the study table: A vs B and A vs C, each asked by both questions
    assert "test accuracy: 2 paired tests = each arm vs full within model and subset (2) + in each column the " \
           "best row vs every other row (2) − 2 asked by both; Holm" in comp
    assert f"| {stats.format_p(stats.mcnemar_exact(12, 0))} | " in comp and "| 0.137 |" in comp
    assert "these two runs (one seed each): McNemar exact" in comp


def test_learning_check_asks_whether_predictions_depend_on_the_gold_label():
    """75/25 test set. A balanced classifier right on 70.3 % of each class (kappa 0.34) learned,
    though it is below the majority share; a constant predictor did not."""
    from emogrid.results.uncertainty import learning_check

    balanced = [[158, 67], [22, 53]]  # recall 0.702 / 0.707 per class
    check = learning_check({"test": {"confusion_matrix": balanced}}, "cell")
    assert check["accuracy"] == pytest.approx(211 / 300) and check["majority"] == pytest.approx(0.75)
    assert check["kappa"] == pytest.approx(0.341, abs=0.001) and check["low"] > 0
    assert check["did_not_learn"] is False
    constant = learning_check({"test": {"confusion_matrix": [[225, 0], [75, 0]]}}, "cell")
    assert constant["did_not_learn"] is True and constant["kappa"] == 0.0
    assert learning_check({"test": {}}, "cell") is None  # multi-label: not checked


def test_cells_sharing_a_test_set_must_share_its_gold_labels():
    from emogrid.errors import DataError
    from emogrid.results import uncertainty as U

    gold = np.array([0, 1, 1, 0])
    other = np.array([0, 1, 0, 0])
    weights = U.bootstrap_weights(4, np.random.default_rng(0), 10)
    with pytest.raises(DataError, match=r"d/m/b/k2_n8/s0 and d/m/a/k2_n8/s0 .* different gold labels \(first at "
                                        r"example 2\)"):
        U.set_replicates(weights, [("d/m/a/k2_n8/s0", "test", gold, gold, 2),
                                   ("d/m/b/k2_n8/s0", "test", other, gold, 2)])


def test_stratified_weights_keep_every_class_count():
    from emogrid.results import uncertainty as U

    gold = np.repeat([0, 1, 2], [50, 30, 5])
    weights = U.bootstrap_weights(gold.size, np.random.default_rng(1), 200, strata=gold)
    for c, count in ((0, 50), (1, 30), (2, 5)):
        assert (weights[:, gold == c].sum(axis=1) == count).all()


def test_reference_csv_n_eval_and_evidence_columns(tmp_path):
    from emogrid.errors import ConfigError
    from emogrid.results.replication import load_reference, replication_frame

    ref = tmp_path / "ref.csv"
    ref.write_text("study,dataset,model,method,labels,samples,split,metric,value,n_eval,evidence\n"
                   'paper,goemotions,m,qlora,2,100,val,accuracy,90.0,240,"Results, Table 3: LLaMA at 2 labels"\n'
                   "paper,goemotions,m,qlora,4,100,val,accuracy,70.0,,\n")
    loaded = load_reference(ref)
    assert loaded["n_eval"].iloc[0] == 240 and pd.isna(loaded["n_eval"].iloc[1])
    assert loaded["evidence"].tolist() == ["Results, Table 3: LLaMA at 2 labels", ""]
    # a perfect match with a margin: replicated; the margin too tight for the interval: consistent
    summary = pd.DataFrame([{"dataset": "goemotions", "model": "m", "method": "qlora", "variant": "", "labels": 2,
                             "samples": 100, "metric": "val_accuracy", "mean": 0.9, "std": 0.01, "n": 3,
                             "se_seed": 0.01 / math.sqrt(3), "se_examples": 0.0, "n_eval": 240}])
    wide = replication_frame(loaded, summary, equivalence_pp=10.0).iloc[0]
    assert wide["verdict"] == "replicated" and wide["n_eval_source"] == "paper"
    assert wide["evidence"] == "Results, Table 3: LLaMA at 2 labels"
    assert replication_frame(loaded, summary, equivalence_pp=1.0).iloc[0]["verdict"] == "consistent"
    assert replication_frame(loaded, summary.assign(mean=0.8)).iloc[0]["verdict"] == "differs"
    ref.write_text("study,dataset,model,method,labels,samples,split,metric,value,n_eval\n"
                   "paper,goemotions,m,qlora,2,100,val,accuracy,90.0,2.5\n")
    with pytest.raises(ConfigError, match=r"line 2, column n_eval: expected a whole number"):
        load_reference(ref)


def test_report_options_choose_the_reference_arm_and_the_correction(tmp_path):
    from emogrid.errors import ConfigError
    from emogrid.study.config import load_config

    runs = _tree(tmp_path / "runs", {"strong": 0.95, "weak": 0.80})
    config = {"grid": {"models": ["x"], "methods": ["lora"]}, "report": {"correction": "bh"}}
    c = A.aggregate(runs, tmp_path / "t1", config=config, expected=[])["comparisons"]
    assert set(c["correction"]) == {"bh"} and c["family"].str.contains("Benjamini-Hochberg").all()
    assert "Benjamini-Hochberg" in (tmp_path / "t1" / "study_accuracy.md").read_text().splitlines()[0]
    with pytest.raises(ConfigError, match=r"report.reference_method: 'full' is not a method of this study "
                                          r"\(expected one of lora\)"):
        A.aggregate(runs, tmp_path / "t2", config={"report": {"reference_method": "full"}}, expected=[])
    from tests.helpers import REPO

    default = str(REPO / "config.yaml")  # a study file is the whole study: layer it on the default one
    study = tmp_path / "study.yaml"
    study.write_text("report: {correction: bh, reference_method: lora, equivalence_pp: 2.5}\n")
    report = load_config([default, str(study)])["report"]
    assert (report["correction"], report["reference_method"], report["equivalence_pp"]) == ("bh", "lora", 2.5)
    defaults = load_config([default])["report"]
    assert (defaults["correction"], defaults["reference_method"], defaults["equivalence_pp"]) == ("holm", None, None)
    study.write_text("report: {correction: bonferroni}\n")
    with pytest.raises(ConfigError, match="correction"):
        load_config([default, str(study)])
