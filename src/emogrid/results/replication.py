"""Replication view: published numbers next to what this study measured, and whether they agree.

`report.reference` names a CSV of published numbers (its columns and checks:
emogrid.study.reference, which checks it when the study is loaded), one per row:

    study, dataset, model, method, labels, samples, split, metric, value [, n_eval] [, evidence] [, source]

`value` is the published number in % (as papers print it; values <= 1 are read as fractions
only if every value of the file is <= 1). Model and method are this study's names (the
config's `models:` keys and methods). Optional: `n_eval`, the size of the evaluation set the
paper scored (a whole number; blank = unknown, then ours is assumed), and `evidence`, where in
the paper the number stands with a short paraphrase (never a quotation).

A published number is one run (one seed) on the paper's own evaluation examples. So
`replication_frame` compares it with our mean over seeds by the difference measured -
published and a 95% prediction interval for that difference: its variance adds our mean's
(seed and example noise), the seed variance of one new run (our seeds' variance, with a t
quantile) and the binomial noise of the paper's n_eval examples (Agresti-Coull, normal).
Verdict: "consistent" (0 inside the interval), "differs" (0 outside), or "replicated" (the
whole interval inside ±`report.equivalence_pp`, when that margin is set).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emogrid.errors import ConfigError
from emogrid.results import stats
from emogrid.study.reference import COLUMNS, read_rows

OPTIONAL = ["n_eval", "evidence"]
OUT_COLUMNS = COLUMNS + ["variant", "n", "measured", "low", "high", "interval", "diff", "diff_low", "diff_high",
                         "n_eval", "n_eval_source", "seed_sd", "verdict", "status", "evidence"]


def load_reference(path: str | Path) -> pd.DataFrame:
    """The reference CSV as a frame, checked (emogrid.study.reference: one ConfigError naming the
    file, line and column of every problem). A relative path is read from the working directory,
    else from the workflow's folder (where config.yaml and studies/references/ live). `n_eval` is
    a number (NaN where blank or absent), `evidence` text ("" where absent)."""
    path, rows, problems = read_rows(path)
    if problems:
        raise ConfigError("; ".join(problems))
    ref = pd.DataFrame([{k: v for k, v in r.items() if k != "line"} for r in rows],
                       columns=list(dict.fromkeys(COLUMNS + ["source"] + [k for r in rows for k in r if k != "line"])))
    ref["labels"] = ref["labels"].astype(float).astype(int)
    ref["samples"] = ref["samples"].astype(float).astype(int)
    ref["value"] = ref["value"].astype(float)
    if len(ref) and (ref["value"] <= 1).all():  # a file of fractions
        ref["value"] = 100 * ref["value"]
    ref["n_eval"] = (pd.to_numeric(ref["n_eval"], errors="coerce") if "n_eval" in ref
                     else pd.Series(np.nan, index=ref.index, dtype=float))
    ref["evidence"] = ref["evidence"].fillna("").astype(str) if "evidence" in ref else ""
    return ref


def reference_splits(path: str | Path | None) -> tuple[str, ...]:
    """The evaluation splits a reference file reports (to compute their intervals)."""
    if not path:
        return ()
    return tuple(sorted(set(load_reference(path)["split"])))


def replication_frame(reference: pd.DataFrame, summary: pd.DataFrame,
                      study_arms: set[tuple[str, str, str]] | None = None,
                      equivalence_pp: float | None = None) -> pd.DataFrame:
    """One row per (reference row, measured variant): published vs measured, in %, with the
    difference's prediction interval and the verdict (see the module docstring).

    `study_arms`: the (dataset, model, method) this study has (finished or not); reference
    rows of other arms are left out, so a reference file that covers several studies shows
    each only what it can compare."""
    rows = []
    for rec in reference.to_dict("records"):
        if study_arms is not None and (rec["dataset"], rec["model"], rec["method"]) not in study_arms:
            continue
        metric = f"{rec['split']}_{rec['metric']}"
        sel = summary[(summary["metric"] == metric) & (summary["dataset"].astype(str) == rec["dataset"])
                      & (summary["model"].astype(str) == rec["model"])
                      & (summary["method"].astype(str) == rec["method"])
                      & (summary["labels"] == rec["labels"]) & (summary["samples"] == rec["samples"])]
        base = {c: rec[c] for c in COLUMNS} | {"evidence": rec.get("evidence", "")}
        if sel.empty:
            rows.append({**base, "variant": "", "n": 0, "status": "not measured"})
            continue
        for m in sel.to_dict("records"):
            rows.append({**base, "variant": m.get("variant") or "", "n": int(m["n"]), "status": "measured",
                         **_measured(m), **difference(m, rec, equivalence_pp)})
    out = pd.DataFrame(rows)
    for col in OUT_COLUMNS:
        if col not in out:
            out[col] = np.nan
    return out[OUT_COLUMNS]


def _get(m: dict, key: str) -> float:
    v = m.get(key)
    return float(v) if v is not None and not pd.isna(v) else np.nan


def _measured(m: dict) -> dict:
    """Our mean and its interval in % (the example-aware one, else Student t over seeds)."""
    low, high, kind = _get(m, "ci95_boot_low"), _get(m, "ci95_boot_high"), "example-aware"
    if np.isnan(low):
        half = _get(m, "ci95_t_half")
        low, high, kind = (m["mean"] - half, m["mean"] + half, "t") if not np.isnan(half) else (np.nan, np.nan, "")
    return {"measured": 100 * m["mean"], "low": 100 * low, "high": 100 * high, "interval": kind}


def difference(m: dict, rec: dict, equivalence_pp: float | None = None, level: float = stats.LEVEL) -> dict:
    """measured - published (pp) with its 95% prediction interval and the verdict.

    The variance has a seed part, our mean's s^2 / S plus one new run's s^2 (our seeds' sample
    variance, S - 1 degrees of freedom: a t quantile), and an example part, our mean's
    example variance plus the Agresti-Coull variance of the paper's n_eval examples (a normal
    quantile), combined as stats.combined_half_width does. With one seed the seed variance is
    unknown and left out (`seed_sd` is blank)."""
    s, mean, published = int(m["n"]), float(m["mean"]), float(rec["value"]) / 100
    sd = _get(m, "std") if s > 1 else np.nan
    se_seed, se_ex = _get(m, "se_seed"), _get(m, "se_examples")
    if np.isnan(se_ex):  # no example-level result: the t interval over seeds carries everything
        se_seed, se_ex = (sd / np.sqrt(s), 0.0) if s > 1 else (np.nan, np.nan)
    se_seed = 0.0 if np.isnan(se_seed) else se_seed
    n_eval, source = _get(rec, "n_eval"), "paper"
    if np.isnan(n_eval):
        n_eval, source = _get(m, "n_eval"), "ours (paper's not given)"
    diff = 100 * (mean - published)
    if np.isnan(se_ex) or np.isnan(n_eval):
        return {"diff": diff, "diff_low": np.nan, "diff_high": np.nan, "n_eval": n_eval,
                "n_eval_source": source if not np.isnan(n_eval) else "", "seed_sd": 100 * sd, "verdict": ""}
    seed = np.sqrt(se_seed ** 2 + (0.0 if np.isnan(sd) else sd * sd))
    examples = np.sqrt(se_ex ** 2 + float(stats.agresti_coull_variance(published, n_eval)))
    half = 100 * stats.combined_half_width(float(seed), float(examples), s - 1, level)
    low, high = diff - half, diff + half
    if equivalence_pp is not None and -equivalence_pp <= low and high <= equivalence_pp:
        verdict = "replicated"
    else:
        verdict = "consistent" if low <= 0 <= high else "differs"
    return {"diff": diff, "diff_low": low, "diff_high": high, "n_eval": n_eval, "n_eval_source": source,
            "seed_sd": 100 * sd, "verdict": verdict}
