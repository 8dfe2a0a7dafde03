"""Known-answer tests for emogrid.results.stats: every statistic against a reference or a hand value."""

from __future__ import annotations

import numpy as np
import pytest

from emogrid.results import stats


def _confusion(gold, pred, k):
    cm = np.zeros((k, k), dtype=int)
    np.add.at(cm, (gold, pred), 1)
    return cm


def test_macro_f1_and_kappa_match_scikit_learn():
    from sklearn.metrics import cohen_kappa_score, f1_score

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 5, 300)
    pred = np.where(rng.random(300) < 0.6, gold, rng.integers(0, 5, 300))
    pred[pred == 4] = 3  # a class never predicted: F1 0, still in the mean
    point = stats.point_metrics(_confusion(gold, pred, 5))
    assert point["f1_macro"] == pytest.approx(f1_score(gold, pred, average="macro", labels=range(5),
                                                       zero_division=0))
    assert point["accuracy"] == pytest.approx((gold == pred).mean())
    assert point["kappa"] == pytest.approx(cohen_kappa_score(gold, pred))
    assert stats.point_metrics([[30, 0], [10, 0]])["kappa"] == 0.0  # a constant predictor


def test_cell_bootstrap_is_stratified_by_class_and_matches_an_index_bootstrap():
    """Each gold class keeps its count in every resample; drawing each confusion row from a
    multinomial = resampling that class's examples (scipy's index bootstrap per class)."""
    rng = np.random.default_rng(1)
    gold = np.repeat([0, 1, 2, 3], [160, 120, 80, 40])
    pred = np.where(rng.random(400) < 0.7, gold, rng.integers(0, 4, 400))
    reps = stats.cell_replicates(_confusion(gold, pred, 4), stats.rng_for("cell"), resamples=4000)
    idx = np.concatenate([np.flatnonzero(gold == c)[np.random.default_rng(2 + c).integers(0, (gold == c).sum(),
                                                                                             (4000, (gold == c).sum()))]
                          for c in range(4)], axis=1)
    ref = (gold[idx] == pred[idx]).mean(axis=1)
    assert np.quantile(reps["accuracy"], [0.025, 0.975]) == pytest.approx(np.quantile(ref, [0.025, 0.975]), abs=0.006)
    assert reps["accuracy"].std() < ((pred == gold).mean() * (1 - (pred == gold).mean()) / 400) ** 0.5


def test_wilson_interval_against_scipy():
    from scipy.stats import binomtest

    for k, n in ((85, 100), (240, 240), (0, 50), (3, 7)):
        ref = binomtest(k, n).proportion_ci(0.95, method="wilson")
        low, high = stats.wilson_interval(k, n)
        assert (float(low), float(high)) == pytest.approx((ref.low, ref.high), abs=1e-9)
    low, high = stats.wilson_interval(240, 240)
    assert high == 1.0 and low == pytest.approx(240 / (240 + 1.959963984540054 ** 2))  # never of zero width


def test_bca_interval_against_scipy_on_a_mean():
    """BCa of a plain mean with the jackknife of each example: scipy.stats.bootstrap's BCa."""
    from scipy.stats import bootstrap

    x = np.random.default_rng(4).exponential(size=60)
    rng = np.random.default_rng(5)
    reps = x[rng.integers(0, 60, (20000, 60))].mean(axis=1)
    jack = (x.sum() - x) / 59
    ref = bootstrap((x,), np.mean, n_resamples=20000, method="BCa", random_state=6).confidence_interval
    assert stats.bca_interval(x.mean(), reps, jack) == pytest.approx((ref.low, ref.high), abs=0.02)


def test_confusion_jackknife_leaves_out_one_example_of_each_outcome():
    cm = np.array([[3, 1], [0, 2]])
    values, counts = stats.confusion_jackknife(cm)
    assert counts.tolist() == [3, 1, 2]
    assert values["accuracy"].tolist() == pytest.approx([4 / 5, 5 / 5, 4 / 5])


def test_bootstrap_is_seeded_by_name():
    cm = [[40, 10], [5, 45]]
    a = stats.cell_replicates(cm, stats.rng_for("goemotions/m/lora/k2_n800/s0"))
    b = stats.cell_replicates(cm, stats.rng_for("goemotions/m/lora/k2_n800/s0"))
    c = stats.cell_replicates(cm, stats.rng_for("goemotions/m/lora/k2_n800/s1"))
    assert np.array_equal(a["accuracy"], b["accuracy"]) and not np.array_equal(a["accuracy"], c["accuracy"])
    assert a["accuracy"].size >= 1000


def test_seed_mean_interval_known_answers():
    from scipy.special import stdtrit

    points = np.array([0.80, 0.84, 0.86])
    rng = np.random.default_rng(0)  # each seed's own example noise + a part the seeds share
    reps = rng.normal(0, 0.01, (3, 5000)) + rng.normal(0, 0.008, 5000) + points[:, None]
    s2 = points.var(ddof=1) / 3
    # each seed its own evaluation set: Student t over the seeds
    sep = stats.seed_mean_interval(points, reps, "separate")
    half = stdtrit(2, 0.975) * np.sqrt(s2)
    assert (sep["low"], sep["high"]) == pytest.approx((points.mean() - half, points.mean() + half))
    # one shared set: + the shared part of the seed mean's variance over the resamples, with z
    # (each seed's own part already moves its value: it is in s^2)
    shared = stats.seed_mean_interval(points, reps, "shared")
    v_ex = (9 * reps.mean(axis=0).var(ddof=1) - reps.var(axis=1, ddof=1).sum()) / 6  # mean covariance
    assert v_ex == pytest.approx(0.008 ** 2, rel=0.1)
    assert shared["se"] == pytest.approx(np.sqrt(s2 + v_ex))
    half = np.sqrt(stdtrit(2, 0.975) ** 2 * s2 + 1.959963984540054 ** 2 * v_ex)
    assert shared["high"] - shared["mean"] == pytest.approx(half)
    # sets not identified: a full seed's example variance (an upper bound)
    unknown = stats.seed_mean_interval(points, reps, "unknown")
    assert unknown["se_examples"] ** 2 == pytest.approx(reps.var(axis=1, ddof=1).mean())
    assert unknown["high"] > shared["high"]
    # all seeds at 100 %: the floor keeps a width
    flat = stats.seed_mean_interval([1.0, 1.0], np.ones((2, 100)), "shared", floor_var=1e-4)
    assert flat["low"] < 1.0
    # seeds that agree exactly by chance: the seed part is floored at each seed's own example noise
    agree = stats.seed_mean_interval([0.5, 0.5, 0.5], rng.normal(0.5, 0.01, (3, 5000)), "shared")
    assert agree["se_seed"] == 0 and agree["se_examples"] == pytest.approx(0.01 / np.sqrt(3), rel=0.05)


def test_combined_p_value_matches_its_interval():
    for mean, se_seed, se_ex, dof in ((0.02, 0.006, 0.004, 2), (-0.01, 0.0, 0.004, 0), (0.03, 0.01, 0.0, 1)):
        p = stats.combined_p_value(mean, se_seed, se_ex, dof)
        assert 0 < p < 1
        assert stats.combined_half_width(se_seed, se_ex, dof, 1 - p) == pytest.approx(abs(mean), rel=1e-6)
    assert stats.combined_p_value(0.0, 0.0, 0.0, 2) == 1.0
    assert stats.combined_p_value(0.01, 0.0, 0.0, 2) == stats.P_TINY


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
    assert stats.adjust(p, "bh") == pytest.approx(stats.benjamini_hochberg(p))
    assert stats.adjust(p, "holm") == pytest.approx(stats.holm(p))


def test_p_values_print_as_numbers():
    """3 significant digits, '< 1e-6' below that; a bound only at a resampling floor."""
    assert stats.format_p(2.7e-5) == "2.7e-05"
    p = stats.mcnemar_exact(20, 1)  # 2 * 22 / 2**21
    assert stats.format_p(p) == f"{p:.3g}" == "2.1e-05"
    assert stats.format_p(0.0123456) == "0.0123" and stats.format_p(0.5) == "0.5"
    assert stats.format_p(1e-7) == "< 1e-6" and stats.format_p(stats.P_TINY) == "< 1e-6"
    assert stats.format_p(2 / 1001, floor=2 / 1001) == "≤ 0.002"
    assert stats.format_p(float("nan")) == "–"


def test_one_identical_difference_is_tiny_never_zero():
    gold = np.zeros(200, dtype=int)
    a = np.zeros(200, dtype=int)  # a always right
    b = np.ones(200, dtype=int)   # b always wrong: every replicate difference is exactly +1
    reps = stats.paired_replicates(gold, a, b, 2, stats.rng_for("p"))
    assert np.all(reps["accuracy"] == 1.0)
    assert stats.bootstrap_se_p(reps["accuracy"]) == stats.P_TINY > 0
    same = stats.paired_replicates(gold, a, a, 2, stats.rng_for("p"))
    assert stats.bootstrap_se_p(same["accuracy"]) == 1.0


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
    assert stats.bootstrap_se_p(reps["accuracy"]) < 0.01
    assert stats.percentile_interval(reps["accuracy"])[0] > 0
    assert np.mean(reps["accuracy"]) == pytest.approx((a == gold).mean() - (b == gold).mean(), abs=0.005)
    c = np.where(rng.random(1000) < 0.80, gold, (gold + 1) % 3)  # same skill as a
    null = stats.paired_replicates(gold, a, c, 3, stats.rng_for("null"))
    assert stats.bootstrap_se_p(null["accuracy"]) > 0.05


def test_baselines():
    maj = stats.majority_baseline([60, 30, 10])
    assert maj["accuracy"] == pytest.approx(0.6)
    assert maj["f1_macro"] == pytest.approx((2 * 0.6 / 1.6) / 3)
    uni = stats.uniform_baseline([60, 30, 10])
    assert uni["accuracy"] == pytest.approx(1 / 3)
    assert stats.uniform_baseline([50, 50])["f1_macro"] == pytest.approx(0.5)
