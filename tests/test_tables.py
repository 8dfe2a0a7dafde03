"""Paper tables: exact numbers, best-marking, formats (CSV, Markdown, LaTeX booktabs)."""

from __future__ import annotations

import pandas as pd
import pytest

import fixtures_results as F
from emogrid import aggregate as A
from emogrid import tables as T


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    F.build_tree(root / "runs", multi=False)
    A.aggregate(root / "runs", root / "tables")
    return root / "tables"


def _md_rows(path):
    lines = [l for l in path.read_text().splitlines() if l.startswith("| ")]
    return [[c.strip() for c in l.strip("|").split("|")] for l in lines]


def test_every_table_file_written(tables):
    for name in T.TABLE_FILES:
        assert (tables / name).stat().st_size > 0, name


def test_study_accuracy_markdown_exact(tables):
    rows = _md_rows(tables / "study_accuracy.md")
    assert rows[0] == ["Model", "Method", "k=2 n=100", "k=2 n=200", "k=4 n=100", "k=4 n=200"]
    body = {(r[0], r[1]): r[2:] for r in rows[1:]}
    assert list(body) == [("tiny-a", "full"), ("tiny-a", "lora [lora.r=4]"), ("tiny-a", "lora [lora.r=8]"),
                          ("tiny-b", "full"), ("tiny-b", "lora [lora.r=4]"), ("tiny-b", "lora [lora.r=8]")]
    # mean ± t half-width in %: std 0.01 over 3 seeds -> ± 2.5; std 0.02 -> ± 5.0
    assert body[("tiny-a", "full")] == ["50.0 ± 2.5", "53.0 ± 2.5", "46.0 ± 2.5", "49.0 ± 2.5"]
    # the failed seed leaves n=2: t(0.975, 1) * 0.01 = 12.7 pp
    assert body[("tiny-a", "lora [lora.r=8]")][2] == "49.0 ± 12.7 (n=2)"
    # the missing cell is a dash
    assert body[("tiny-b", "full")][3] == "–"
    # best per column: tiny-b lora r=8 everywhere, bold
    assert body[("tiny-b", "lora [lora.r=8]")] == ["**59.0 ± 5.0**", "**62.0 ± 5.0**",
                                                   "**55.0 ± 5.0**", "**58.0 ± 5.0**"]
    bold = sum(c.startswith("**") for r in rows[1:] for c in r[2:])
    assert bold == 4
    assert "Student t" in (tables / "study_accuracy.md").read_text().splitlines()[0]


def test_best_marking_ties_and_csv(tables):
    csv = pd.read_csv(tables / "study_f1_macro.csv")
    assert list(csv.columns[:2]) == ["Model", "Method"]
    starred = csv.iloc[:, 2:].apply(lambda col: col.astype(str).str.endswith(" *")).to_numpy().sum()
    assert starred == 4
    assert csv.iloc[0, 2] == "40.0 ± 2.5"  # macro-F1 = accuracy - 0.1
    # a tie after rounding marks both rows
    summary = pd.DataFrame([
        {"dataset": "d", "model": "m1", "method": "a", "variant": "", "labels": 2, "samples": 10,
         "metric": "test_accuracy", "mean": 0.7001, "ci95_t_half": 0.01, "n": 3},
        {"dataset": "d", "model": "m2", "method": "a", "variant": "", "labels": 2, "samples": 10,
         "metric": "test_accuracy", "mean": 0.6999, "ci95_t_half": 0.01, "n": 3},
        {"dataset": "d", "model": "m3", "method": "a", "variant": "", "labels": 2, "samples": 10,
         "metric": "test_accuracy", "mean": 0.5, "ci95_t_half": float("nan"), "n": 1},
    ])
    piv = T.study_pivot(summary, "test_accuracy", {"model": ["m1", "m2", "m3"]})
    assert len(piv["best"]) == 2
    out = T.render_study(piv, "Test accuracy")
    assert "50.0 (n=1)" in out["md"]


def test_latex_booktabs(tables):
    tex = (tables / "study_accuracy.tex").read_text()
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\cmidrule(lr){3-4}",
                  r"\multicolumn{2}{c}{$k=2$}", r"\textbf{62.0 $\pm$ 5.0}", "lora [lora.r=4]"):
        assert token in tex, token
    assert tex.count(r"\textbf{") == 4
    assert " -- " in tex  # the missing cell
    assert T.latex_escape("a_b & 50%") == r"a\_b \& 50\%"


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
    assert "| goemotions | accuracy | full | lora [lora.r=4] | 21 | -2.00 |" in comp
