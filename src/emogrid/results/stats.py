"""Intervals, paired tests and multiplicity corrections for what emogrid reports.

Pure numpy (+ scipy.special): no pandas, no files. Every resampling is seeded from the names
of what it resamples (`stable_seed`), so the same results give the same intervals in any
order, on any machine with the same numpy minor version (pyproject.toml pins it: numpy may
change the streams of `Generator` methods between minor versions).

Resampling is stratified by gold class (each class keeps its test count, as a designed test
set does): one cell's resample is one multinomial draw per row of its confusion matrix. A
paired comparison resamples the examples both cells were scored on (emogrid.results.uncertainty).

- One cell: `wilson_interval` for accuracy (a percentile bootstrap has zero width at zero
  errors); `bca_interval` (bias-corrected and accelerated bootstrap, jackknife from the
  confusion matrix: `confusion_jackknife`) for macro-F1, whose plug-in estimate is biased at
  small per-class counts; `cell_replicates` gives the stratified replicates.
- Over seeds: `seed_mean_interval`: SE^2 = s^2_seed / S + v_ex (v_ex: the part of the
  example-bootstrap variance of the seed mean, seeds held fixed, that the seeds share) when
  every seed was scored on one shared evaluation set, the seed part with a t quantile (S - 1 df) and the example part with
  a normal one; Student t over the seeds (df = S - 1) when each seed has its own evaluation
  set (its spread already carries the example noise). A paired difference uses the same
  interval and the p-value that matches it (`combined_p_value`).
- `mcnemar_exact`: the exact McNemar test of two classifiers on identical examples.
- `holm`, `benjamini_hochberg` (`adjust`): adjusted p-values over a named family.
- `format_p`: an exact p with 3 significant digits, "< 1e-6" below that.
- `cohen_kappa_from_counts`: the learning check (did the predictions depend on the gold label?).
- `majority_baseline`, `uniform_baseline`: what a classifier that learned nothing scores.
"""

from __future__ import annotations

import hashlib

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95
CELL_ACCURACY_METHOD = f"Wilson score interval, {LEVEL:.0%}"
CELL_F1_METHOD = (f"BCa bootstrap stratified by gold class, {RESAMPLES} resamples, {LEVEL:.0%}")
SEED_SHARED_METHOD = ("over seeds on one shared evaluation set: seed variance / S (t, S - 1 df) + the example-"
                      "bootstrap variance the seeds share (normal), combined")
SEED_SEPARATE_METHOD = "over seeds, each on its own evaluation set: Student t, df = S - 1"
SEED_UNKNOWN_METHOD = ("over seeds, evaluation sets not identified (no predictions.jsonl): seed variance / S (t) "
                       "+ one seed's example variance (normal; as if fully shared), combined")
SEED_ONLY_METHOD = "over seeds without example-level results: Student t, df = S - 1 (seed variation only)"
FEW_PER_CLASS = 10  # fewer evaluation examples in a class: the macro-F1 interval is approximate


def stable_seed(*parts) -> int:
    """A 64-bit seed from names (cell ids, metric names): independent of call order."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def rng_for(*parts) -> np.random.Generator:
    return np.random.default_rng(stable_seed(*parts))


# ----------------------------------------------------------------------------- metrics of counts


def macro_f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Macro-F1 over the last axis (classes), 0 for a class with no gold and no prediction
    (scikit-learn's `zero_division=0` with every label listed)."""
    denom = 2 * tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
    return f1.mean(axis=-1)


def cohen_kappa_from_counts(tp: np.ndarray, support: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Cohen's kappa over the last axis (classes) from per-class right, gold and predicted counts:
    (observed - chance agreement) / (1 - chance), 0 where chance agreement is 1 (one class)."""
    n = support.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = tp.sum(axis=-1) / n
        chance = (support * predicted).sum(axis=-1) / (n * n)
        kappa = np.where(chance < 1 - 1e-12, (observed - chance) / np.where(chance < 1 - 1e-12, 1 - chance, 1), 0.0)
    return kappa


def metrics_of_confusions(cm: np.ndarray) -> dict:
    """accuracy, macro-F1 and Cohen's kappa of confusion matrices (..., k, k) (rows gold)."""
    cm = np.asarray(cm, dtype=float)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support, predicted = cm.sum(axis=-1), cm.sum(axis=-2)
    return {"accuracy": tp.sum(axis=-1) / support.sum(axis=-1),
            "f1_macro": macro_f1_from_counts(tp, predicted - tp, support - tp),
            "kappa": cohen_kappa_from_counts(tp, support, predicted)}


def point_metrics(confusion) -> dict:
    """accuracy, macro-F1 and kappa of a confusion matrix (rows gold, columns predicted)."""
    return {k: float(v) for k, v in metrics_of_confusions(confusion).items()}


# ----------------------------------------------------------------------------- one cell


def cell_replicates(confusion, rng: np.random.Generator, resamples: int = RESAMPLES) -> dict:
    """Bootstrap replicates {metric: (resamples,)} of one cell from its confusion matrix,
    stratified by gold class: each row is redrawn with its own count (a multinomial draw of a
    row = resampling that class's examples)."""
    cm = np.asarray(confusion, dtype=np.int64)
    if cm.sum() == 0:
        raise ValueError("empty confusion matrix: no test examples")
    k = cm.shape[0]
    draws = np.zeros((resamples, k, k))
    for g in range(k):
        n_g = int(cm[g].sum())
        if n_g:
            draws[:, g, :] = rng.multinomial(n_g, cm[g] / n_g, size=resamples)
    return metrics_of_confusions(draws)


def wilson_interval(correct, n, level: float = LEVEL) -> tuple:
    """Wilson score interval of a proportion correct / n (arrays allowed): never of zero width,
    and close to its nominal coverage at 0 or n successes, where a percentile bootstrap of
    n examples collapses to a point."""
    from scipy.special import ndtri

    z = ndtri(0.5 + level / 2)
    correct, n = np.asarray(correct, dtype=float), np.asarray(n, dtype=float)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def confusion_jackknife(confusion) -> tuple[dict, np.ndarray]:
    """Leave-one-example-out values of every metric of a confusion matrix: one value per
    distinct (gold, pred) outcome, with how many examples share it. ({metric: (m,)}, counts (m,))"""
    cm = np.asarray(confusion, dtype=np.int64)
    gold, pred = np.nonzero(cm)
    loo = np.broadcast_to(cm, (gold.size,) + cm.shape).copy()
    loo[np.arange(gold.size), gold, pred] -= 1
    return metrics_of_confusions(loo), cm[gold, pred].astype(float)


def bca_interval(theta: float, replicates, jackknife, counts=None, level: float = LEVEL) -> tuple[float, float]:
    """Bias-corrected and accelerated bootstrap interval (Efron 1987): percentiles of the
    replicates moved by the bias z0 (share of replicates below the estimate) and the
    acceleration from the jackknife values (each weighted by `counts` examples)."""
    from scipy.special import ndtr, ndtri

    t = np.asarray(replicates, dtype=float)
    jack = np.asarray(jackknife, dtype=float)
    w = np.ones_like(jack) if counts is None else np.asarray(counts, dtype=float)
    share = (np.count_nonzero(t < theta) + 0.5 * np.count_nonzero(t == theta)) / t.size
    if not 0 < share < 1:  # every replicate on one side: no bias correction can be estimated
        return percentile_interval(t, level)
    z0 = ndtri(share)
    u = (w * jack).sum() / w.sum() - jack
    spread = (w * u * u).sum()
    accel = (w * u ** 3).sum() / (6 * spread ** 1.5) if spread > 0 else 0.0
    z = ndtri(np.array([(1 - level) / 2, (1 + level) / 2]))
    alpha = ndtr(z0 + (z0 + z) / (1 - accel * (z0 + z)))
    low, high = np.quantile(t, np.clip(alpha, 0, 1))
    return float(low), float(high)


def basic_interval(theta: float, replicates, level: float = LEVEL) -> tuple[float, float]:
    """Basic (reverse percentile) bootstrap interval: corrects the bias a percentile interval
    doubles. Clipped to [0, 1] (every metric here is a share)."""
    low, high = percentile_interval(replicates, level)
    return float(np.clip(2 * theta - high, 0, 1)), float(np.clip(2 * theta - low, 0, 1))


def percentile_interval(replicates, level: float = LEVEL) -> tuple[float, float]:
    low, high = np.quantile(np.asarray(replicates, dtype=float), [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


# ----------------------------------------------------------------------------- over seeds


def agresti_coull_variance(p, n, level: float = LEVEL):
    """The variance of a proportion p of n after adding z^2/2 successes and failures: never 0,
    so a seed mean at 100 % still has an example-noise term."""
    from scipy.special import ndtri

    z2 = ndtri(0.5 + level / 2) ** 2
    n_adj = np.asarray(n, dtype=float) + z2
    p_adj = (np.asarray(p, dtype=float) * np.asarray(n, dtype=float) + z2 / 2) / n_adj
    return p_adj * (1 - p_adj) / n_adj


def seed_mean_interval(points, replicates=None, design: str = "shared", floor_var: float = 0.0,
                       level: float = LEVEL) -> dict:
    """The mean over S seeds with its standard error and 95% interval.

    `points` (S,): each seed's value. `replicates` (S, B): each seed's example-bootstrap
    replicates. The variance of the mean has two parts: the seed part s^2 / S (s^2: the seeds'
    sample variance, S - 1 degrees of freedom) and the example part v_ex: with design "shared"
    (one evaluation set, replicate b = the same resample for every seed) the part of the
    bootstrap variance that the seeds share (their mean pairwise covariance over the resamples;
    each seed's own example noise already moves its value, so it is in s^2, and counting it
    twice made the paired test reject 2 % instead of 5 % of true nulls; where s^2 falls short of
    that own part, seeds agree by chance, and the shortfall joins the example part); "unknown"
    (sets not identified) the mean per-seed
    bootstrap variance, as if the errors were fully shared (an upper bound); "separate" (each
    seed its own set) none: the seed spread already carries the example noise. `floor_var`: the
    least v_ex (a proportion at 0 or 100 % has a zero bootstrap variance).

    The half-width combines the parts with their own quantiles, sqrt(t_{S-1}^2 s^2 / S + z^2
    v_ex) (a modified-large-sample combination): a Satterthwaite t undercovers at 2 seeds
    (s^2 with one degree of freedom is often near 0, which inflates its df; 87 % in simulation),
    this holds 95-99 %. One seed: z times the SE from its replicates.
    {"mean", "se", "se_seed", "se_examples", "dof", "low", "high", "method"}
    """
    x = np.asarray(points, dtype=float)
    s = x.size
    mean = float(x.mean())
    reps = None if replicates is None else np.asarray(replicates, dtype=float)
    method = ""
    if s == 1:
        seed_var = 0.0
        v_ex = np.nan if reps is None else max(float(reps[0].var(ddof=1)), floor_var)
        method = "one seed: bootstrap SE over the evaluation examples, normal" if reps is not None else ""
    else:
        seed_var = float(x.var(ddof=1)) / s
        if reps is None or design == "separate":
            # no example part; a guard for seeds that happen to agree exactly
            v_ex = 0.0 if seed_var > 0 or reps is None else max(float(reps.var(axis=1, ddof=1).mean()) / s, floor_var)
            method = SEED_SEPARATE_METHOD if reps is not None else SEED_ONLY_METHOD
        elif design == "shared":
            # the example noise the seeds share is their mean pairwise covariance over the
            # resamples; each seed's own part already moves its value, so it is in s^2, which
            # can however not be smaller than that own part (a floor where seeds agree by chance)
            per_seed = reps.var(axis=1, ddof=1)
            common = (s * s * float(reps.mean(axis=0).var(ddof=1)) - float(per_seed.sum())) / (s * (s - 1))
            own = max(float(per_seed.mean()) - common, 0.0)
            shortfall = max(own / s - seed_var, 0.0)  # measured by the bootstrap: a normal quantile
            v_ex, method = max(common, floor_var, 0.0) + shortfall, SEED_SHARED_METHOD
        else:
            v_ex, method = max(float(reps.var(axis=1, ddof=1).mean()), floor_var), SEED_UNKNOWN_METHOD
    out = {"mean": mean, "se": float(np.sqrt(seed_var + v_ex)), "se_seed": float(np.sqrt(seed_var)),
           "se_examples": float(np.sqrt(v_ex)), "dof": s - 1, "method": method}
    half = combined_half_width(out["se_seed"], out["se_examples"], s - 1, level)
    out["low"], out["high"] = mean - half, mean + half
    return out


def combined_half_width(se_seed: float, se_examples: float, dof: int, level: float = LEVEL) -> float:
    """sqrt(t_dof^2 se_seed^2 + z^2 se_examples^2): each part with its own quantile."""
    from scipy.special import ndtri, stdtrit

    q = 0.5 + level / 2
    t = float(stdtrit(dof, q)) if dof >= 1 else 0.0
    seed = t * se_seed if se_seed > 0 else 0.0
    return float(np.sqrt(seed * seed + (float(ndtri(q)) * se_examples) ** 2))


def combined_p_value(mean: float, se_seed: float, se_examples: float, dof: int) -> float:
    """Two-sided p of 'the mean is 0' that matches `combined_half_width`: the level at which the
    interval just reaches 0 (bisection on log p; the half-width shrinks as the level falls)."""
    if not (np.isfinite(se_seed) and np.isfinite(se_examples)):
        return np.nan
    if se_seed + se_examples <= 1e-12 * max(1.0, abs(mean)):
        return 1.0 if abs(mean) <= 1e-12 else P_TINY
    target = abs(mean)

    def half(p: float) -> float:
        return combined_half_width(se_seed, se_examples, dof, 1 - p)

    if half(1.0 - 1e-12) >= target:  # even the narrowest interval holds 0
        return 1.0
    if half(P_TINY) < target:
        return P_TINY
    lo, hi = np.log(P_TINY), 0.0  # half(exp(lo)) >= target > half(exp(hi))
    for _ in range(80):
        mid = (lo + hi) / 2
        if half(float(np.exp(mid))) >= target:
            lo = mid
        else:
            hi = mid
    return float(np.exp((lo + hi) / 2))


def t_p_value(mean: float, se: float, df: float) -> float:
    """Two-sided p of 'the mean is 0' from its SE and df (normal where df is infinite); a
    difference with SE 0 is P_TINY (not 0) unless it is 0 itself (then 1)."""
    from scipy.special import ndtr, stdtr

    if not np.isfinite(se) or se <= 1e-12 * max(1.0, abs(mean)):
        return 1.0 if abs(mean) <= 1e-12 else P_TINY
    z = abs(mean) / se
    p = 2 * (stdtr(df, -z) if np.isfinite(df) else ndtr(-z))
    return float(max(P_TINY, min(1.0, p)))


# ----------------------------------------------------------------------------- paired


def joint_outcomes(gold, pred_a, pred_b) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (gold, pred_a, pred_b) triples of examples scored by both arms, with counts."""
    triples = np.stack([np.asarray(gold), np.asarray(pred_a), np.asarray(pred_b)], axis=1)
    uniq, counts = np.unique(triples, axis=0, return_counts=True)
    return uniq[:, 0], uniq[:, 1], uniq[:, 2], counts


def _metrics_of_outcomes(counts: np.ndarray, gold: np.ndarray, pred: np.ndarray, k: int) -> dict:
    """accuracy and macro-F1 for replicate counts (B, m) over m distinct (gold, pred) outcomes."""
    cm = np.zeros((counts.shape[0], k, k))
    np.add.at(cm, (slice(None), gold, pred), counts)
    out = metrics_of_confusions(cm)
    return {"accuracy": out["accuracy"], "f1_macro": out["f1_macro"]}


def paired_replicates(gold, pred_a, pred_b, k: int, rng: np.random.Generator,
                      resamples: int = RESAMPLES) -> dict:
    """Replicates {metric: (B,)} of metric(a) - metric(b), both on the same resampled examples."""
    g, pa, pb, counts = joint_outcomes(gold, pred_a, pred_b)
    n = int(counts.sum())
    draws = rng.multinomial(n, counts / n, size=resamples)
    a = _metrics_of_outcomes(draws, g, pa, k)
    b = _metrics_of_outcomes(draws, g, pb, k)
    return {m: a[m] - b[m] for m in a}


P_TINY = 1e-16  # a p-value below this is stored as this bound (never 0); printed "< 1e-6" like any p < 1e-6


def bootstrap_se_p(diff_replicates) -> float:
    """Two-sided p-value of 'no difference' from the bootstrap distribution of a difference:
    normal approximation with the bootstrap standard error (z = mean / sd); not floored at
    2 / (B + 1) as a tail count is. A difference identical in every resample is P_TINY."""
    d = np.asarray(diff_replicates, dtype=float)
    return t_p_value(float(d.mean()), float(d.std(ddof=1)), np.inf)


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Exact McNemar test: two-sided binomial test of the discordant pairs at p = 1/2.

    `a_only`: examples arm a got right and arm b wrong; `b_only` the reverse.
    """
    from scipy.special import bdtr

    n = int(a_only) + int(b_only)
    if n == 0:
        return 1.0
    return float(min(1.0, 2 * bdtr(min(int(a_only), int(b_only)), n, 0.5)))


# ----------------------------------------------------------------------------- multiplicity


def _ranked(pvalues) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, out, order): the p-values as floats, an all-NaN result of their shape, and the
    indices of the non-NaN ones from smallest to largest (stable: ties keep their order)."""
    p = np.asarray(pvalues, dtype=float)
    ok = np.flatnonzero(~np.isnan(p))
    return p, np.full_like(p, np.nan), ok[np.argsort(p[ok], kind="stable")]


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error); NaN entries stay NaN."""
    p, out, order = _ranked(pvalues)
    m = order.size
    if m == 0:
        return out
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out


def benjamini_hochberg(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate); NaN entries stay NaN."""
    p, out, order = _ranked(pvalues)
    m = order.size
    if m == 0:
        return out
    scaled = p[order] * m / np.arange(1, m + 1)
    out[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return out


CORRECTIONS = {"holm": (holm, "Holm (family-wise error)"),
               "bh": (benjamini_hochberg, "Benjamini-Hochberg (false discovery rate)")}


def adjust(pvalues, correction: str = "holm") -> np.ndarray:
    """Adjusted p-values by `report.correction`: holm or bh."""
    return CORRECTIONS[correction][0](pvalues)


def format_p(p: float, floor: float | None = None) -> str:
    """An exact p with 3 significant digits ('0.0123', '2.7e-05'), '< 1e-6' below that; '≤ x'
    only for a p at a resampling floor x (a tail count of B resamples cannot go below 2/(B+1))."""
    if p is None or not np.isfinite(p):
        return "–"
    if floor is not None and p <= floor * (1 + 1e-9):
        return f"≤ {floor:.2g}"
    if p < 1e-6:
        return "< 1e-6"
    return f"{p:.3g}"


# ----------------------------------------------------------------------------- baselines


def majority_baseline(support) -> dict:
    """Accuracy and macro-F1 of always predicting the most frequent test class."""
    s = np.asarray(support, dtype=float)
    n, k = s.sum(), s.size
    share = s.max() / n
    return {"accuracy": float(share), "f1_macro": float(2 * share / (1 + share) / k)}


def uniform_baseline(support) -> dict:
    """Expected accuracy and macro-F1 of guessing a class uniformly at random."""
    s = np.asarray(support, dtype=float)
    n, k = s.sum(), s.size
    share = s / n
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(share > 0, 2 * share * (1 / k) / (share + 1 / k), 0.0)
    return {"accuracy": 1.0 / k, "f1_macro": float(f1.mean())}
