"""Known-answer tests for emogrid.results.stats: every statistic against a reference or a hand value."""

from __future__ import annotations

import numpy as np
import pytest

from emogrid.results import stats


def _confusion(gold, pred, k):
    cm = np.zeros((k, k), dtype=int)
    np.add.at(cm, (gold, pred), 1)
    return cm


def test_macro_f1_matches_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 5, 300)
    pred = np.where(rng.random(300) < 0.6, gold, rng.integers(0, 5, 300))
    pred[pred == 4] = 3  # a class never predicted: F1 0, still in the mean
    point = stats.point_metrics(_confusion(gold, pred, 5))
    assert point["f1_macro"] == pytest.approx(f1_score(gold, pred, average="macro", labels=range(5),
                                                       zero_division=0))
    assert point["accuracy"] == pytest.approx((gold == pred).mean())


def test_cell_bootstrap_interval_matches_a_resampling_reference():
    """Multinomial draws of the confusion counts = resampling examples: same percentile interval
    as scipy's index bootstrap (20,000 resamples) up to Monte-Carlo error."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng(1)
    gold = rng.integers(0, 4, 400)
    pred = np.where(rng.random(400) < 0.7, gold, rng.integers(0, 4, 400))
    reps = stats.cell_replicates(_confusion(gold, pred, 4), stats.rng_for("cell"))
    low, high = stats.percentile_interval(reps["accuracy"])
    ref = bootstrap(((gold == pred).astype(float),), np.mean, n_resamples=20000, method="percentile",
                    confidence_level=0.95, random_state=np.random.default_rng(2)).confidence_interval
    assert low == pytest.approx(ref.low, abs=0.006) and high == pytest.approx(ref.high, abs=0.006)
    assert low < (gold == pred).mean() < high

    def macro(idx):
        return stats.point_metrics(_confusion(gold[idx], pred[idx], 4))["f1_macro"]

    idx = np.random.default_rng(3).integers(0, 400, size=(4000, 400))
    ref_f1 = np.quantile([macro(i) for i in idx], [0.025, 0.975])
    assert stats.percentile_interval(reps["f1_macro"]) == pytest.approx(tuple(ref_f1), abs=0.008)


def test_bootstrap_is_seeded_by_name():
    cm = [[40, 10], [5, 45]]
    a = stats.cell_replicates(cm, stats.rng_for("goemotions/m/lora/k2_n800/s0"))
    b = stats.cell_replicates(cm, stats.rng_for("goemotions/m/lora/k2_n800/s0"))
    c = stats.cell_replicates(cm, stats.rng_for("goemotions/m/lora/k2_n800/s1"))
    assert np.array_equal(a["accuracy"], b["accuracy"]) and not np.array_equal(a["accuracy"], c["accuracy"])
    assert a["accuracy"].size >= 1000


def test_accuracy_interval_from_counts_equals_the_binomial_percentiles():
    low, high = stats.accuracy_interval(85, 100, stats.rng_for("x"), resamples=20000)
    from scipy.stats import binom

    assert low == pytest.approx(binom.ppf(0.025, 100, 0.85) / 100, abs=0.011)
    assert high == pytest.approx(binom.ppf(0.975, 100, 0.85) / 100, abs=0.011)


def test_seed_example_interval_is_wider_than_examples_alone_and_reduces_to_one_seed():
    rng = stats.rng_for("t")
    one = stats.cell_replicates([[30, 20], [20, 30]], rng)["accuracy"]
    assert np.array_equal(stats.seed_example_replicates(one[None, :], rng), one)
    # three seeds at 0.5, 0.6, 0.7: the seed spread must widen the interval of the mean
    per_seed = np.stack([stats.cell_replicates([[a, 100 - a], [100 - a, a]], rng)["accuracy"]
                         for a in (50, 60, 70)])
    both = stats.seed_example_replicates(per_seed, rng)
    examples_only = per_seed.mean(axis=0)
    width = np.subtract(*stats.percentile_interval(both)[::-1])
    assert width > 1.5 * np.subtract(*stats.percentile_interval(examples_only)[::-1])
    assert stats.percentile_interval(both)[0] < 0.6 < stats.percentile_interval(both)[1]


def test_mcnemar_exact_against_hand_values():
    # 5 discordant pairs one way, 1 the other: 2 * P(X <= 1 | n = 6, 1/2) = 2 * 7/64
    assert stats.mcnemar_exact(5, 1) == pytest.approx(0.21875)
    assert stats.mcnemar_exact(1, 5) == pytest.approx(0.21875)
    # 10 vs 0: 2 / 2^10
    assert stats.mcnemar_exact(10, 0) == pytest.approx(2 / 1024)
    assert stats.mcnemar_exact(3, 3) == 1.0 and stats.mcnemar_exact(0, 0) == 1.0


def test_holm_and_bh_against_hand_computed_examples():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> 0.02, 0.03, 0.06, max(0.06, 0.04)
    assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: 0.005*4/1, 0.01*4/2, 0.03*4/3, 0.04*4/4 = 0.02 0.02 0.04 0.04 (cumulative min from the top)
    assert stats.benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    out = stats.holm([0.5, np.nan, 0.01])
    assert np.isnan(out[1]) and out[0] == pytest.approx(0.5) and out[2] == pytest.approx(0.02)
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_paired_bootstrap_p_is_never_zero_and_prints_its_bound():
    gold = np.zeros(200, dtype=int)
    a = np.zeros(200, dtype=int)  # a always right
    b = np.ones(200, dtype=int)   # b always wrong: every replicate difference is exactly +1
    reps = stats.paired_replicates(gold, a, b, 2, stats.rng_for("p"))
    assert np.all(reps["accuracy"] == 1.0)
    p = stats.bootstrap_p(reps["accuracy"])
    assert p == pytest.approx(stats.p_floor()) and p > 0
    assert stats.format_p(p, stats.RESAMPLES) == f"≤ {2 / (stats.RESAMPLES + 1):.2g}"
    # the SE-based p of a difference identical in every resample: the stored bound, never 0
    assert stats.bootstrap_se_p(reps["accuracy"]) == stats.P_TINY > 0
    assert stats.format_p(stats.P_TINY) == "< 0.001"
    assert stats.format_p(0.0123) == "0.012" and stats.format_p(1e-6) == "< 0.001"
    same = stats.paired_replicates(gold, a, a, 2, stats.rng_for("p"))
    assert stats.bootstrap_p(same["accuracy"]) == 1.0 and stats.bootstrap_se_p(same["accuracy"]) == 1.0


def test_bootstrap_se_p_is_the_normal_tail_of_mean_over_sd():
    from scipy.stats import norm

    d = np.random.default_rng(0).normal(0.02, 0.01, 5000)
    assert stats.bootstrap_se_p(d) == pytest.approx(2 * norm.sf(abs(d.mean()) / d.std(ddof=1)), rel=1e-9)


def test_paired_bootstrap_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(5)
    gold = rng.integers(0, 3, 1000)
    a = np.where(rng.random(1000) < 0.80, gold, (gold + 1) % 3)
    b = np.where(rng.random(1000) < 0.70, gold, (gold + 1) % 3)
    reps = stats.paired_replicates(gold, a, b, 3, stats.rng_for("real"))
    assert stats.bootstrap_p(reps["accuracy"]) < 0.01 and stats.bootstrap_se_p(reps["accuracy"]) < 0.01
    assert stats.percentile_interval(reps["accuracy"])[0] > 0
    assert np.mean(reps["accuracy"]) == pytest.approx((a == gold).mean() - (b == gold).mean(), abs=0.005)
    c = np.where(rng.random(1000) < 0.80, gold, (gold + 1) % 3)  # same skill as a
    null = stats.paired_replicates(gold, a, c, 3, stats.rng_for("null"))
    assert stats.bootstrap_p(null["accuracy"]) > 0.05 and stats.bootstrap_se_p(null["accuracy"]) > 0.05


def test_baselines():
    maj = stats.majority_baseline([60, 30, 10])
    assert maj["accuracy"] == pytest.approx(0.6)
    assert maj["f1_macro"] == pytest.approx((2 * 0.6 / 1.6) / 3)
    uni = stats.uniform_baseline([60, 30, 10])
    assert uni["accuracy"] == pytest.approx(1 / 3)
    assert stats.uniform_baseline([50, 50])["f1_macro"] == pytest.approx(0.5)
