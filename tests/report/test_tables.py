"""Paper tables: exact numbers, best-marking, formats (CSV, Markdown, LaTeX booktabs)."""

from __future__ import annotations

import fixtures_results as F
import pandas as pd
import pytest

from emogrid.report import aggregate as A
from emogrid.report import tables as T
from emogrid.report.paper_tables.efficiency import efficiency_frame, render_efficiency
from emogrid.report.paper_tables.layout import latex_escape
from emogrid.report.paper_tables.study import render_study, study_pivot


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    F.build_tree(root / "runs", multi=False)
    A.aggregate(root / "runs", root / "tables")
    return root / "tables"


def _md_rows(path):
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_every_table_file_written(tables):
    for name in T.TABLE_FILES:
        assert (tables / name).stat().st_size > 0, name


def _boot(summary, model, method, variant, k, n, metric="test_accuracy"):
    row = summary[(summary.model == model) & (summary.method == method) & (summary.variant == variant)
                  & (summary.labels == k) & (summary.samples == n) & (summary.metric == metric)].iloc[0]
    return f"{100 * row['mean']:.1f} [{100 * row['ci95_boot_low']:.1f}, {100 * row['ci95_boot_high']:.1f}]"


def test_study_accuracy_markdown_exact(tables):
    rows = _md_rows(tables / "study_accuracy.md")
    assert rows[0] == ["Model", "Method", "k=2 n=100", "k=2 n=200", "k=4 n=100", "k=4 n=200"]
    body = {(r[0], r[1]): r[2:] for r in rows[1:]}
    assert list(body) == [("tiny-a", "full"), ("tiny-a", "lora [lora.r=4]"), ("tiny-a", "lora [lora.r=8]"),
                          ("tiny-b", "full"), ("tiny-b", "lora [lora.r=4]"), ("tiny-b", "lora [lora.r=8]"),
                          ("*(baseline)*", "*majority class*"), ("*(baseline)*", "*uniform chance*")]
    summary = pd.read_csv(tables / "summary.csv", keep_default_na=False, na_values=[""])
    summary["variant"] = summary["variant"].fillna("")
    # mean over seeds [example-aware interval], in %; then the marks
    assert body[("tiny-a", "full")][2].startswith(_boot(summary, "tiny-a", "full", "", 4, 100))
    assert body[("tiny-a", "full")][2].startswith("46.0 [")
    # the failed seed leaves n=2, marked
    assert body[("tiny-a", "lora [lora.r=8]")][2].startswith(_boot(summary, "tiny-a", "lora", "lora.r=8", 4, 100)
                                                               + " (n=2)")
    assert body[("tiny-b", "full")][3] == "–"  # the missing cell
    # 20-40 test examples known by their confusion matrices only (an unpaired, conservative
    # test): no best beats every other row, so nothing is bold and every row ties with the best
    bold = sum(c.startswith("**") for r in rows[1:] for c in r[2:])
    assert bold == 0
    assert all(c.endswith("≈") for c in body[("tiny-b", "lora [lora.r=8]")])
    assert all(c.endswith("≈") for c in body[("tiny-b", "lora [lora.r=4]")])
    # 10 per class at k=2 with 50-62 % accuracy: chance level, every seed flagged; k=4 seed 0 of
    # tiny-a/full (4 of 10 right per class) too
    assert all("† ≈" in c for c in body[("tiny-a", "full")][:2]) and "†1/3" in body[("tiny-a", "full")][2]
    # baselines of the (balanced) synthetic test sets: majority = uniform = 1/k
    assert body[("*(baseline)*", "*majority class*")] == ["50.0", "50.0", "25.0", "25.0"]
    caption = (tables / "study_accuracy.md").read_text().splitlines()[0]
    assert caption.startswith("**Test accuracy (%)**") and "bootstrap" in caption
    assert "Family: test accuracy: 30 paired tests = each arm vs full within model and subset (14) + in each column " \
           "the best row vs every other row (19) − 3 asked by both; Holm (family-wise error), α = 0.05" in caption
    assert (tables / "study_f1_macro.md").read_text().startswith("**Test macro-F1 (%)**")


def _family_rows(tests):
    """Question-'best' rows of comparisons.csv: m1 (the best) vs each (model, p, significant)."""
    return pd.DataFrame([
        {"scope": "subset", "question": "best", "metric": "test_accuracy", "dataset": "d", "mode": "single",
         "labels": 2, "samples": 10, "model": "m1", "model_b": m, "method_a": "a", "variant_a": "", "method_b": "a",
         "variant_b": "", "p": p, "p_adj": p, "significant": sig, "diff_mean": 0.02, "family": "test accuracy: 2 tests"}
        for m, p, sig in tests])


def test_bold_needs_the_best_to_beat_every_row_and_ties_say_which():
    summary = pd.DataFrame([
        {"dataset": "d", "model": m, "method": "a", "variant": "", "labels": 2, "samples": 10,
         "metric": "test_accuracy", "mean": mean, "ci95_t_half": 0.01 if n > 1 else float("nan"), "n": n}
        for m, mean, n in (("m1", 0.72, 3), ("m2", 0.70, 3), ("m3", 0.5, 1))])
    levels = {"model": ["m1", "m2", "m3"]}
    col = (2, 10)
    both = _family_rows([("m2", 0.01, True), ("m3", 0.001, True)])
    piv = study_pivot(summary, "test_accuracy", levels, both)
    assert piv["best"] == {(("m1", "a", ""), col)} and not piv["ties"] and piv["family"] == "test accuracy: 2 tests"
    out = render_study(piv, "Test accuracy (%)")
    assert "**72.0 ± 1.0**" in out["md"] and "50.0 (n=1)" in out["md"] and "Family: test accuracy: 2 tests" in out["md"]
    # the runner-up is beaten but the third row is not: nothing bold, best and third tie
    one = _family_rows([("m2", 0.01, True), ("m3", 0.2, False)])
    piv = study_pivot(summary, "test_accuracy", levels, one)
    assert not piv["best"] and piv["ties"] == {(("m1", "a", ""), col), (("m3", "a", ""), col)}
    out = render_study(piv, "Test accuracy (%)")
    assert "72.0 ± 1.0 ≈" in out["md"] and "50.0 (n=1) ≈" in out["md"] and "70.0 ± 1.0 |" in out["md"]
    assert "**" not in out["md"].split("\n", 2)[2]
    # no test possible is its own mark, and it also keeps the best from bold
    untested = _family_rows([("m2", 0.01, True), ("m3", float("nan"), False)])
    piv = study_pivot(summary, "test_accuracy", levels, untested)
    assert not piv["best"] and not piv["ties"] and piv["untested"] == {(("m3", "a", ""), col)}
    assert "50.0 (n=1) ∘" in render_study(piv, "x")["md"]
    assert render_study(study_pivot(summary, "test_accuracy", levels), "x")["csv"].count(" *") == 0


def test_latex_booktabs(tables):
    tex = (tables / "study_accuracy.tex").read_text()
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\cmidrule(lr){3-4}",
                  r"\multicolumn{2}{c}{$k=2$}", r"$\approx$", "lora [lora.r=4]", "% Test accuracy (%)"):
        assert token in tex, token
    assert tex.count(r"\textbf{") == 0
    assert " -- " in tex  # the missing cell
    assert latex_escape("a_b & 50%") == r"a\_b \& 50\%"


def test_efficiency_table(tables):
    eff = pd.read_csv(tables / "efficiency.csv")
    row = eff[(eff.model == "tiny-a") & (eff.method == "full")].iloc[0]
    assert row["trainable_params"] == 1_000_000 and row["trainable_percent"] == 100.0
    assert row["train_seconds"] == pytest.approx(30.0)  # n/10*2 averaged over n = 100, 200
    assert row["cells"] == 12 and row["memory_kind"] == "rss"
    md = (tables / "efficiency.md").read_text()
    assert "| tiny-a | lora [lora.r=4] | 10.00K | 1.00 | 15.0 | 500 | 30.0 | 12 |" in md


def test_per_class_and_problems(tables):
    pc = pd.read_csv(tables / "per_class_f1.csv")
    assert set(pc["n"]) == {200}  # largest n of each k
    k4 = pc[pc["k"] == 4].set_index("Class")
    # F1 of class i = acc - 0.1 + 0.01 i, mean over seeds; tiny-a/full at k4 n200: acc 0.49
    assert k4.loc["admiration", "tiny-a / full"] == pytest.approx(0.39)
    assert k4.loc["love", "tiny-a / full"] == pytest.approx(0.42)
    assert pd.isna(k4.loc["love", "tiny-b / full"])  # the missing cell
    problems = (tables / "problems.md").read_text()
    assert "## Failed: 1" in problems and "OutOfMemoryError" in problems and "hint:" in problems
    comp = (tables / "method_comparisons.md").read_text()
    assert comp.startswith("**Paired comparisons per subset** — test split")
    assert "| vs reference | 2 | 100 | accuracy | tiny-a / lora [lora.r=4] | tiny-a / full | 3 | +2.00 |" in comp
    assert "| best vs row | 2 | 100 | accuracy | tiny-b / lora [lora.r=8] | tiny-a / full | 3 | +9.00 |" in comp
    assert "no pooled p-value" in comp and "Holm (family-wise error)" in comp


def test_efficiency_table_compares_gpu_memory_with_the_plan():
    """GPU cells carry planned_gpu_mb and gpu_plan_ratio (emogrid.training.efficiency.gpu_plan_check): the
    efficiency table shows both, averaged per model x method; CPU-only studies don't get the columns."""
    cells = pd.DataFrame([
        {"status": "ok", "dataset": "d", "model": "m", "method": "lora", "variant": "", "labels": 2, "samples": 8,
         "seed": s, "trainable_params": 10, "trainable_percent": 1.0, "train_seconds": 1.0, "peak_memory_mb": 900.0,
         "train_samples_per_second": 5.0, "peak_memory_kind": "cuda", "planned_gpu_mb": 1000.0,
         "gpu_plan_ratio": ratio} for s, ratio in ((0, 0.8), (1, 1.0))])
    levels = {"dataset": ["d"], "model": ["m"], "method": ["lora"], "variant": [""]}
    out = render_efficiency(efficiency_frame(cells, levels))
    assert "Measured / plan" in out["md"] and "| 1000 | 0.90 |" in out["md"]
    cpu = render_efficiency(efficiency_frame(cells.drop(columns=["planned_gpu_mb", "gpu_plan_ratio"]), levels))
    assert "Measured / plan" not in cpu["md"]


def test_gpu_plan_check_in_metrics(monkeypatch):
    import emogrid.planning.memory
    from emogrid.training.efficiency import gpu_plan_check

    monkeypatch.setattr(emogrid.planning.memory, "plan_cell_memory", lambda spec: {"train_peak_mb": 2000.0})
    assert gpu_plan_check({}, measured=2500.0) == {"peak_memory_reserved_mb": 2500.0,
                                                    "planned_gpu_mb": 2000.0, "gpu_plan_ratio": 1.25}
    monkeypatch.setattr(emogrid.planning.memory, "plan_cell_memory", lambda spec: 1 / 0)
    assert gpu_plan_check({}, measured=10.0) == {"peak_memory_reserved_mb": 10.0}
    if not __import__("torch").cuda.is_available():
        assert gpu_plan_check({}) == {}
