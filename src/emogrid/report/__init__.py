"""Stage 8, report: what a researcher reads. Owns the `emogrid aggregate` command (tidy tables
and paper tables: `aggregate`, `tables`, one module per table in `paper_tables/`), the
`emogrid figures` command (`plots`, one module per figure family in `figures/`), the names of
every output (`outputs`), what the report rules wait for (`rule_inputs`) and the terminal view
of a grid (`emogrid status`: `status`), the Python API over a study's results (`study_results`:
`emogrid.open_study`), `emogrid diff` (`diff`, rendering emogrid.results.tree_diff) and
`emogrid publish` (`publish`: a cell's adapter with a model card, to the hub).

Reads: the frames of emogrid.results (and, for publish, a cell's adapter/). Writes:
results/tables/*.csv|md|tex|parquet, results/figures/*.png|pdf, results/publish/ORG/NAME/.
Imports: any earlier stage.
"""
