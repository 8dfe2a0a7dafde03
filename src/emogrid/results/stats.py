"""Intervals, paired tests and multiplicity corrections for what emogrid reports.

Pure numpy (+ scipy.special): no pandas, no files. Every resampling is seeded from the names
of what it resamples (`stable_seed`), so the same results give the same intervals in any
order, on any machine.

The unit of resampling is the test example. Drawing n test examples with replacement is, in
law, a multinomial draw over the distinct outcomes of an example: (gold, pred) pairs for one
cell, (gold, pred_a, pred_b) triples for a paired comparison. Drawing the counts directly
(`np.random.Generator.multinomial`) is the same percentile bootstrap as resampling indices,
at a cost that grows with the number of distinct outcomes instead of n. So one cell's
interval needs only its confusion matrix, and a paired comparison only the joint outcome
counts of the two cells on their shared test examples.

- `cell_replicates`: bootstrap replicates of accuracy and macro-F1 of one cell.
- `seed_example_replicates`: across seeds, resample the seeds (with replacement), then the
  test examples of each drawn seed: an interval for the seed mean that carries both seed and
  test-sample variation (a two-stage bootstrap; examples are resampled independently per
  drawn seed).
- `paired_replicates` + `bootstrap_p`: paired bootstrap of a difference a - b on identical
  test examples; `mcnemar_exact`: the exact (binomial) McNemar test of two classifiers on
  identical examples (one seed).
- `holm`, `benjamini_hochberg`: adjusted p-values over a named family.
- `p_floor`, `format_p`: a bootstrap p-value is never 0; its bound is printed instead.
- `majority_baseline`, `uniform_baseline`: what a classifier that learned nothing scores.
"""

from __future__ import annotations

import hashlib

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95
INTERVAL_METHOD = f"percentile bootstrap over test examples, {RESAMPLES} resamples, {LEVEL:.0%}"
SEED_INTERVAL_METHOD = (f"two-stage percentile bootstrap: seeds resampled, then each drawn seed's "
                        f"test examples; {RESAMPLES} resamples, {LEVEL:.0%}")


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


def _metrics_of_outcomes(counts: np.ndarray, gold: np.ndarray, pred: np.ndarray, k: int) -> dict:
    """accuracy and macro-F1 for replicate counts (B, m) over m distinct (gold, pred) outcomes."""
    n = counts.sum(axis=1).astype(float)
    right = gold == pred
    acc = counts[:, right].sum(axis=1) / n
    tp = np.zeros((counts.shape[0], k))
    fp = np.zeros_like(tp)
    fn = np.zeros_like(tp)
    for j in range(counts.shape[1]):
        g, p = int(gold[j]), int(pred[j])
        if g == p:
            tp[:, g] += counts[:, j]
        else:
            fp[:, p] += counts[:, j]
            fn[:, g] += counts[:, j]
    return {"accuracy": acc, "f1_macro": macro_f1_from_counts(tp, fp, fn)}


def point_metrics(confusion) -> dict:
    """accuracy and macro-F1 of a confusion matrix (rows gold, columns predicted)."""
    cm = np.asarray(confusion, dtype=float)
    tp = np.diag(cm)
    return {"accuracy": float(tp.sum() / cm.sum()),
            "f1_macro": float(macro_f1_from_counts(tp, cm.sum(axis=0) - tp, cm.sum(axis=1) - tp))}


# ----------------------------------------------------------------------------- one cell


def cell_replicates(confusion, rng: np.random.Generator, resamples: int = RESAMPLES) -> dict:
    """Bootstrap replicates {metric: (resamples,)} of one cell from its test confusion matrix."""
    cm = np.asarray(confusion, dtype=np.int64)
    k = cm.shape[0]
    gold, pred = np.nonzero(cm)
    counts = cm[gold, pred]
    n = int(counts.sum())
    if n == 0:
        raise ValueError("empty confusion matrix: no test examples")
    draws = rng.multinomial(n, counts / n, size=resamples)
    return _metrics_of_outcomes(draws, gold, pred, k)


def percentile_interval(replicates, level: float = LEVEL) -> tuple[float, float]:
    low, high = np.quantile(np.asarray(replicates, dtype=float), [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def percentile_intervals(replicates: np.ndarray, level: float = LEVEL) -> np.ndarray:
    """(m, 2) percentile intervals of m replicate rows (m, B) at once."""
    if len(replicates) == 0:
        return np.empty((0, 2))
    return np.quantile(np.asarray(replicates, dtype=float), [(1 - level) / 2, (1 + level) / 2], axis=1).T


def accuracy_interval(correct: int, n: int, rng: np.random.Generator, resamples: int = RESAMPLES,
                      level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of an accuracy `correct / n` over its n test examples."""
    draws = rng.binomial(int(n), correct / n, size=resamples) / n
    return percentile_interval(draws, level)


# ----------------------------------------------------------------------------- over seeds


def seed_example_replicates(per_seed: np.ndarray, rng: np.random.Generator,
                            shared_examples: bool = False) -> np.ndarray:
    """Two-stage bootstrap of the seed mean from per-seed replicates (S, B).

    Replicate b draws S seeds with replacement, then takes each drawn seed's value on a
    resample of the test examples. `shared_examples`: every seed was scored on the same
    examples and replicate b of each seed used the same resample (one resampled test set
    per b, as it would be drawn); otherwise each drawn seed gets its own, independent
    resample. With one seed it is that seed's replicates.
    """
    per_seed = np.asarray(per_seed, dtype=float)
    s, b = per_seed.shape
    if s == 1:
        return per_seed[0]
    drawn = rng.integers(0, s, size=(b, s))
    if shared_examples:
        columns = np.broadcast_to(np.arange(b)[:, None], (b, s))
    else:
        columns = rng.integers(0, b, size=(b, s))
    return per_seed[drawn, columns].mean(axis=1)


# ----------------------------------------------------------------------------- paired


def joint_outcomes(gold, pred_a, pred_b) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (gold, pred_a, pred_b) triples of examples scored by both arms, with counts."""
    triples = np.stack([np.asarray(gold), np.asarray(pred_a), np.asarray(pred_b)], axis=1)
    uniq, counts = np.unique(triples, axis=0, return_counts=True)
    return uniq[:, 0], uniq[:, 1], uniq[:, 2], counts


def paired_replicates(gold, pred_a, pred_b, k: int, rng: np.random.Generator,
                      resamples: int = RESAMPLES) -> dict:
    """Replicates {metric: (B,)} of metric(a) - metric(b), both on the same resampled examples."""
    g, pa, pb, counts = joint_outcomes(gold, pred_a, pred_b)
    n = int(counts.sum())
    draws = rng.multinomial(n, counts / n, size=resamples)
    a = _metrics_of_outcomes(draws, g, pa, k)
    b = _metrics_of_outcomes(draws, g, pb, k)
    return {m: a[m] - b[m] for m in a}


def p_floor(resamples: int = RESAMPLES) -> float:
    """The smallest two-sided bootstrap p-value `bootstrap_p` can return."""
    return 2.0 / (resamples + 1)


def bootstrap_p(diff_replicates) -> float:
    """Two-sided bootstrap p-value of 'no difference': twice the smaller tail share of the
    replicates at or beyond 0, with the +1 correction (never 0: at least `p_floor`)."""
    d = np.asarray(diff_replicates, dtype=float)
    b = d.size
    below = (1 + np.count_nonzero(d <= 0)) / (b + 1)
    above = (1 + np.count_nonzero(d >= 0)) / (b + 1)
    return float(min(1.0, 2 * min(below, above)))


P_TINY = 1e-16  # a p-value below this is stored as this bound (never 0) and printed as "< 0.001"


def bootstrap_se_p(diff_replicates) -> float:
    """Two-sided p-value of 'no difference' from the bootstrap distribution of a difference:
    normal approximation with the bootstrap standard error (z = mean / sd). Unlike a tail
    count it is not floored at 2 / (B + 1), so Holm over a large family stays possible; a
    value below P_TINY (or a difference identical in every resample) is stored as P_TINY."""
    from scipy.special import ndtr

    d = np.asarray(diff_replicates, dtype=float)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd <= 1e-12 * max(1.0, abs(mean)):
        return 1.0 if abs(mean) <= 1e-12 else P_TINY
    return float(max(P_TINY, min(1.0, 2 * ndtr(-abs(mean) / sd))))


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


def format_p(p: float, resamples: int | None = None, digits: int = 3) -> str:
    """'0.012', '< 0.001' (below what can be printed) or '≤ 0.001' (at the bootstrap's bound:
    every resample on one side of 0, the smallest p `resamples` can give)."""
    if p is None or not np.isfinite(p):
        return "–"
    tiny = 10.0 ** -digits
    if p <= P_TINY:
        return f"< {tiny:g}"
    if resamples is not None and p <= p_floor(resamples) * (1 + 1e-9):
        return f"≤ {p_floor(resamples):.2g}"
    if p < tiny:
        return f"< {tiny:g}"
    return f"{p:.{digits}f}"


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
