"""Paper tables: exact numbers, best-marking, formats (CSV, Markdown, LaTeX booktabs)."""

from __future__ import annotations

import fixtures_results as F
import pandas as pd
import pytest

from emogrid.report import aggregate as A
from emogrid.report import tables as T
from emogrid.report.paper_tables.efficiency import efficiency_frame, render_efficiency
from emogrid.report.paper_tables.layout import DASH, latex_escape
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
    # train time is training only; evaluation and checkpoint seconds stand beside it
    assert "| Train time (s) | Eval time (s) | Checkpoint time (s) |" in md
    assert "| tiny-a | lora [lora.r=4] | 10.00K | 1.00 | 15.0 | 1.0 | 0.5 | 500 | 30.0 | 12 |" in md
    assert row["checkpoint_seconds"] == pytest.approx(4.0)


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


def test_efficiency_table_marks_cells_that_shared_their_gpu():
    """Packed cells (metrics.json efficiency.gpu_co_tenants > 0) ran beside other cells: their
    times include the neighbours' load, and the table says how many of each row's cells did."""
    def cell(method, seed, co):
        row = {"status": "ok", "dataset": "d", "model": "m", "method": method, "variant": "", "labels": 2,
               "samples": 8, "seed": seed, "trainable_params": 10, "trainable_percent": 1.0, "train_seconds": 1.0,
               "peak_memory_mb": 900.0, "train_samples_per_second": 5.0, "peak_memory_kind": "cuda"}
        return row | ({"gpu_co_tenants": co, "gpu_share": 0.3} if co is not None else {})

    cells = pd.DataFrame([cell("lora", 0, 2), cell("lora", 1, 0), cell("full", 0, None)])
    levels = {"dataset": ["d"], "model": ["m"], "method": ["lora", "full"], "variant": [""]}
    out = render_efficiency(efficiency_frame(cells, levels))
    assert "| Shared GPU |" in out["md"] and "1/2 †" in out["md"] and "their neighbours' load" in out["md"]
    full_row = next(line for line in out["md"].splitlines() if "| full |" in line)
    assert full_row.rstrip().endswith(f"| {DASH} |")  # never packed
    alone = render_efficiency(efficiency_frame(cells.drop(columns=["gpu_co_tenants", "gpu_share"]), levels))
    assert "Shared GPU" not in alone["md"]


def test_gpu_plan_check_in_metrics(monkeypatch):
    import emogrid.planning.memory
    from emogrid.training.efficiency import gpu_plan_check

    plan = {"tensor_peak_mb": 1300.0, "reserved_peak_mb": 1500.0, "train_peak_mb": 2000.0}
    monkeypatch.setattr(emogrid.planning.memory, "per_gpu_plan", lambda spec, **kw: plan)
    assert gpu_plan_check({}, measured=1875.0) == {"peak_memory_reserved_mb": 1875.0, "planned_gpu_mb": 2000.0,
                                                    "planned_reserved_mb": 1500.0, "gpu_plan_ratio": 1.25}
    monkeypatch.setattr(emogrid.planning.memory, "per_gpu_plan", lambda spec, **kw: 1 / 0)
    assert gpu_plan_check({}, measured=10.0) == {"peak_memory_reserved_mb": 10.0}
    if not __import__("torch").cuda.is_available():
        assert gpu_plan_check({}) == {}


# ----------------------------------------------------------------------------- the studies' reports

METHODS_BASE = {"qwen2.5-1.5b": 0.80, "llama-3.2-1b": 0.78, "gpt2-xl": 0.70, "gemma-3-1b": 0.76, "bert-base": 0.74}
METHODS_OFFSET = {"full": 0.06, "lora": 0.0, "qlora": -0.01, "ia3": -0.05, "loraplus": 0.01, "dora": 0.0}
SWEEP_BEST = {"model": "qwen2.5-1.5b", "method": "qlora", "lora.r": 64, "lora.alpha": 64, "lora.targets": "all-linear"}


def _methods_accuracy(cell: dict) -> float:
    """Model + method effects, -25 pp at 16 labels, seeds 0.2 pp apart; qwen / full far ahead at
    k=4 (so one column has a best that beats every row), close to llama / full at k=16."""
    acc = METHODS_BASE[cell["model"]] + METHODS_OFFSET[cell["method"]] - 0.25 * (cell["labels"] == 16)
    acc += 0.002 * (cell["seed"] - 1)
    return acc + 0.08 * ((cell["model"], cell["method"], cell["labels"]) == ("qwen2.5-1.5b", "full", 4))


def _sweep_accuracy(cell: dict) -> float:
    """One setting far ahead of the 111 others, which sit within 5 pp of each other."""
    if all(cell.get(k) == v for k, v in SWEEP_BEST.items()):
        return 0.80
    return 0.55 + 0.02 * (cell["model"] == "qwen2.5-1.5b") + 0.01 * (cell["lora.r"] >= 64) \
        - 0.02 * (cell["method"] == "qlora")


@pytest.fixture(scope="module")
def study_reports(tmp_path_factory):
    """studies/methods.yaml (5 models x 6 methods x 2 k x 3 seeds) and studies/lora_sweep.yaml
    (112 settings, one seed) on synthetic scored trees, aggregated by the command line."""
    from emogrid.cli import main
    from emogrid.results.collect import expected_cells

    root = tmp_path_factory.mktemp("studies")
    out = {}
    for study, accuracy in (("methods", _methods_accuracy), ("lora_sweep", _sweep_accuracy)):
        F.write_scored_study(root / study / "runs", expected_cells([f"studies/{study}.yaml"]), accuracy, n_test=400)
        assert main(["aggregate", "--configfile", f"studies/{study}.yaml", "--runs", str(root / study / "runs"),
                     "--out", str(root / study / "tables")]) == 0
        out[study] = root / study / "tables"
    return out


def _marks_follow_the_family(tables, metric: str) -> tuple[int, str]:
    """Checks one study table against comparisons.csv: its caption names the metric's one
    family, and a cell is bold exactly where the column's best beats every other row there.
    Returns (bold cells, caption)."""
    stem = {"test_accuracy": "study_accuracy", "test_f1_macro": "study_f1_macro"}[metric]
    md = (tables / f"{stem}.md").read_text()
    caption = md.splitlines()[0]
    comp = pd.read_csv(tables / "comparisons.csv", keep_default_na=False, na_values=[""], dtype={"variant_a": str})
    comp["variant_a"] = comp["variant_a"].fillna("")
    fam = comp[(comp["metric"] == metric) & (comp["scope"] == "subset")]
    assert fam["family"].nunique() == 1 and caption.count("Family: ") == 1
    assert f"Family: {fam['family'].iloc[0]}." in caption
    rows = _md_rows(tables / f"{stem}.md")
    heads = rows[0]
    bold = {(r[0], r[1], heads[j]) for r in rows[1:] for j, c in enumerate(r) if c.startswith("**")}
    expected = set()
    for (k, n), grp in fam[fam["question"] == "best"].groupby(["labels", "samples"]):
        if grp["significant"].all():
            best = grp.iloc[0]
            label = best["method_a"] + (f" [{best['variant_a']}]" if best["variant_a"] else "")
            expected.add((best["model"], label, f"k={int(k)} n={int(n)}"))
    assert bold == expected
    return len(bold), caption


def test_methods_study_report_one_family_and_bold_only_where_the_best_beats_every_row(study_reports):
    tables = study_reports["methods"]
    n_bold, caption = _marks_follow_the_family(tables, "test_accuracy")
    assert n_bold == 1  # qwen / full at k=4; at k=16 llama / full is not shown worse
    assert "Family: test accuracy: 98 paired tests = each arm vs full within model and subset (50) + in each " \
           "column the best row vs every other row (58) − 10 asked by both; Holm (family-wise error)" in caption
    _marks_follow_the_family(tables, "test_f1_macro")
    md = (tables / "study_accuracy.md").read_text()
    assert "| qwen2.5-1.5b | full | **94." in md  # the one bold cell: k=4
    comp = (tables / "method_comparisons.md").read_text()
    assert comp.count("test accuracy: 98 paired tests") == 1 and "methods (over seeds)" not in comp


def test_lora_sweep_report_one_seed_compares_runs(study_reports):
    tables = study_reports["lora_sweep"]
    n_bold, caption = _marks_follow_the_family(tables, "test_accuracy")
    assert n_bold == 1
    # no full fine-tuning in this study: the family is the best-vs-every-row question alone
    assert "Family: test accuracy: 111 paired tests = in each column the best row vs every other row (111)" in caption
    assert "With one seed the marks compare these trained runs, not the methods." in caption
    comp = pd.read_csv(tables / "comparisons.csv")
    assert set(comp["claim"]) == {"these two runs"}
    assert comp[comp["metric"] == "test_accuracy"]["test"].eq("these two runs (one seed each): McNemar exact").all()


def test_macro_f1_cells_with_a_class_under_ten_examples_are_marked():
    summary = pd.DataFrame([
        {"dataset": "d", "model": m, "method": "a", "variant": "", "labels": 16, "samples": 80, "metric": metric,
         "mean": 0.5, "ci95_boot_low": 0.4, "ci95_boot_high": 0.6, "n": 1, "min_class_n": few}
        for m, few in (("m1", 5), ("m2", 12)) for metric in ("test_f1_macro", "test_accuracy")])
    f1 = render_study(study_pivot(summary, "test_f1_macro", {}), "Test macro-F1 (%)")["md"]
    assert "| m1 | a | 50.0 [40.0, 60.0] ‡ |" in f1 and "| m2 | a | 50.0 [40.0, 60.0] |" in f1
    assert "‡: a class has fewer than 10 test examples (macro-F1 interval approximate)" in f1
    acc = render_study(study_pivot(summary, "test_accuracy", {}), "Test accuracy (%)")["md"]
    assert "‡" not in acc  # Wilson's interval for accuracy does not depend on per-class counts


def test_empty_replication_table_says_why():
    """No reference set, or one whose rows name no arm of this study: the table says which."""
    from emogrid.report.paper_tables.replication import render
    from emogrid.results.replication import OUT_COLUMNS

    empty = pd.DataFrame(columns=OUT_COLUMNS)
    assert "(no reference: set report.reference)" in render(empty)["md"]
    md = render(empty, reference="studies/references/paper.csv")["md"]
    assert "no published number matches a cell of this study" in md and "studies/references/paper.csv" in md
    assert "set report.reference" not in md
