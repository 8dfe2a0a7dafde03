"""Figures: every file produced and non-empty, heatmap annotations and missing-cell listing."""

from __future__ import annotations

import fixtures_results as F
import matplotlib
import pytest

from emogrid.cli import main
from emogrid.errors import EmogridError
from emogrid.report import aggregate as A
from emogrid.report import plots as P
from emogrid.report.figures.heatmap import study_heatmap
from emogrid.report.figures.per_class import confusion_matrix
from emogrid.report.figures.style import FORMATS


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("plots")
    F.build_tree(root / "runs", multi=False)
    A.aggregate(root / "runs", root / "tables", expected=F.expected_grid())
    return root


def test_agg_backend():
    assert matplotlib.get_backend().lower() == "agg"


def test_every_figure_written(tree):
    out = tree / "figures"
    cell = "goemotions/tiny-a/full/k4_n200/s0"
    assert main(["figures", "--tables", str(tree / "tables"), "--out", str(out),
                 "--runs", str(tree / "runs"), "--confusion", cell]) == 0
    for name in P.FIGURES:
        for ext in FORMATS:
            path = out / f"{name}.{ext}"
            assert path.stat().st_size > 5000, path
    for ext in FORMATS:
        assert (out / "confusion" / f"goemotions__tiny-a__full__k4_n200__s0.{ext}").stat().st_size > 5000
    assert (out / "study_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "study_heatmap.pdf").read_bytes()[:5] == b"%PDF-"


def test_heatmap_annotations_and_missing(tree):
    data = P.load_tables(tree / "tables")
    fig, info = study_heatmap(data)
    # full: tiny-a 4 + tiny-b 3 (k4 n200 missing); lora: 2 models x 2 variants x 4 columns
    assert info["annotated"] == 7 + 16
    texts = [t for ax in fig.axes for t in ax.texts if t.get_gid() == "value"]
    assert len(texts) == 23
    assert info["panels"] == ["full", "lora"]
    assert info["missing"] == ["tiny-b · full · k=4, n=200"]
    # the failed seed leaves fewer seeds: marked with a dagger (first line: mean and marks,
    # second line: the bootstrap interval)
    first_lines = [t.get_text().split("\n")[0] for t in texts]
    assert sum(x.endswith("†") for x in first_lines) == 1
    assert "49.0†" in first_lines
    assert all(t.get_text().count("\n") == 1 and t.get_text().split("\n")[1].startswith("[") for t in texts)
    footer = " ".join(t.get_text() for t in fig.texts)
    assert "tiny-b · full · k=4, n=200" in footer
    matplotlib.pyplot.close(fig)


def test_all_seeds_failed_cell_is_hatched_and_named(tmp_path):
    runs = tmp_path / "runs"
    F.write_cell(runs, "goemotions", "tiny-a", "full", "", {}, 2, 100, 0, 0.6)
    F.write_cell(runs, "goemotions", "tiny-a", "full", "", {}, 2, 200, 0, 0.6, failed=True)
    A.aggregate(runs, tmp_path / "tables")
    fig, info = study_heatmap(P.load_tables(tmp_path / "tables"))
    assert info["annotated"] == 1
    assert info["missing"] == ["tiny-a · full · k=2, n=200 (failed)"]
    assert [t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() == "failed"] == ["failed"]
    # placeholders where there is nothing to draw, never a crash
    P.make_figures(tmp_path / "tables", tmp_path / "figures", formats=("png",))
    for name in P.FIGURES:
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 0


def test_errors_are_user_errors(tmp_path, tree):
    with pytest.raises(EmogridError, match="emogrid aggregate"):
        P.load_tables(tmp_path)
    with pytest.raises(EmogridError, match="no metrics.json"):
        confusion_matrix(tree / "runs", "goemotions/nope/full/k2_n100/s0")


def test_every_hatched_cell_is_listed_where_the_footer_says(tmp_path):
    """Arms that never combine k=2 with n=200 (and so on) leave positions with no cell at all: the
    heatmap hatches them, says so, and problems.md (where the footer sends the reader) lists every
    hatched position with why, the failed one too."""
    runs = tmp_path / "runs"
    for model in ("tiny-a", "tiny-b"):
        for k, n in ((2, 100), (4, 200), (8, 400)):
            F.write_cell(runs, "goemotions", model, "lora", "", {}, k, n, 0, 0.6 + k / 100,
                         failed=(model, k) == ("tiny-b", 8))
    A.aggregate(runs, tmp_path / "tables")
    fig, info = study_heatmap(P.load_tables(tmp_path / "tables"))
    missing = info["missing"]
    assert len(missing) == 2 * 9 - 5  # 2 models x 3 k x 3 n, less the 5 finished
    assert "tiny-a · lora · k=2, n=200 (no cell in the study)" in missing
    assert "tiny-b · lora · k=8, n=400 (failed)" in missing
    problems = (tmp_path / "tables" / "problems.md").read_text()
    assert f"## Hatched in the study heatmap (no finished seed): {len(missing)}" in problems
    for desc in missing:
        position = desc.split(" (")[0]
        why = "failed" if desc.endswith("(failed)") else "no cell"
        assert f"goemotions/{position}: {why}" in problems, desc
    footer = " ".join(t.get_text() for t in fig.texts)
    assert "more (all in the study's tables/problems.md, 'Hatched in the study heatmap')" in footer
    matplotlib.pyplot.close(fig)
