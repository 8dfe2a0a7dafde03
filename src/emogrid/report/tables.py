"""Paper tables from the tidy aggregates: CSV, Markdown and LaTeX (booktabs).

Written by `emogrid aggregate` into the tables directory (fixed names, so Snakemake can
declare them):

- ``study_accuracy.*`` / ``study_f1_macro.*``: rows model x method (x variant), columns
  labels k x samples n; mean over seeds [95% interval], in %; the marks of the metric's
  family of paired tests (comparisons.csv): bold (Markdown/LaTeX) or starred (CSV) where the
  column's best beats every other row, ≈ not significantly worse than the best, ∘ no test;
  ``(n=2)`` fewer seeds than the study's usual count; ``–`` = no result.
  In a tuned study the title adds "tuned on validation: <keys>".
- ``efficiency.*``: per model x method: trainable parameters and %, train time, peak
  memory, training throughput (means over the cells of that pair); in a tuned study also the
  total train time of its cells beside that of its tuning cells.
- ``per_class_f1.*``: test F1 per class, rows (k, class), columns model / method, at the
  largest sample size of each k (or the one asked for).
- ``method_comparisons.*``: the family of paired tests per subset, then pooled reference rows.
- ``recipe.*``: every value the cells train with, stated by the paper (with where) or ours.
- ``problems.md``: failed, unreadable and pending cells with their errors.

Each table is one module of emogrid.report.paper_tables; this module writes them all.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from emogrid.atomic import write_text
from emogrid.report import outputs
from emogrid.report.paper_tables.comparisons import render_comparisons
from emogrid.report.paper_tables.efficiency import efficiency_frame, render_efficiency
from emogrid.report.paper_tables.health import with_health_flags
from emogrid.report.paper_tables.layout import table_title
from emogrid.report.paper_tables.per_class import per_class_selection, render_per_class
from emogrid.report.paper_tables.problems import render_problems
from emogrid.report.paper_tables.recipe import recipe_frame
from emogrid.report.paper_tables.recipe import render as render_recipe
from emogrid.report.paper_tables.replication import render as render_replication
from emogrid.report.paper_tables.study import render_study, study_pivot, with_learn_flags

TABLE_FILES = outputs.TABLE_FILES


def write_tables(out_dir: str | Path, cells: pd.DataFrame, summary: pd.DataFrame,
                 per_class: pd.DataFrame, comparisons: pd.DataFrame, levels: dict,
                 per_class_samples: int | None = None,
                 report: dict | None = None, replication: pd.DataFrame | None = None,
                 config: dict | None = None, tuning: list[dict] | None = None) -> list[Path]:
    """Write every table (see TABLE_FILES); returns the paths written. `tuning`: the study's
    tuning choices (emogrid.results.tuning), named in the study tables' titles and costed in the
    efficiency table."""
    from emogrid.results.tuning import caption_suffix, tuning_compute

    out_dir = Path(out_dir)
    written: list[Path] = []

    def put(stem: str, texts: dict[str, str]) -> None:
        for ext, text in texts.items():
            path = out_dir / f"{stem}.{ext}"
            write_text(path, text)
            written.append(path)

    split = (report or {}).get("split", "test")
    flagged = with_health_flags(with_learn_flags(summary), cells)
    for stem, metric in (("study_accuracy", "accuracy"), ("study_f1_macro", "f1_macro")):
        name = f"{split}_{metric}"
        title = table_title(split, metric) + caption_suffix(tuning or [])
        put(stem, render_study(study_pivot(flagged, name, levels, comparisons), title))
    put("efficiency", render_efficiency(efficiency_frame(cells, levels, tuning_compute(tuning or []))))
    put("per_class_f1", render_per_class(per_class_selection(per_class, per_class_samples), levels,
                                         per_class_samples))
    put("method_comparisons", render_comparisons(comparisons, split))
    from emogrid.results import replication as replication_mod

    frame = replication if replication is not None else pd.DataFrame(columns=replication_mod.OUT_COLUMNS)
    put("replication", render_replication(frame, (report or {}).get("equivalence_pp"), (report or {}).get("reference")))
    put("recipe", render_recipe(recipe_frame(config)))
    write_text(out_dir / "problems.md", render_problems(cells))
    written.append(out_dir / "problems.md")
    return written
