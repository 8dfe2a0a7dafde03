"""Stage 8, report: what a researcher reads. Owns the `emogrid aggregate` command (tidy tables
and paper tables: `aggregate`, `tables`, one module per table in `paper_tables/`), the
`emogrid figures` command (`plots`, one module per figure family in `figures/`), the names of
every output (`outputs`), what the report rules wait for (`rule_inputs`) and the terminal view
of a grid (`emogrid status`: `status`).

Reads: the frames of emogrid.results. Writes: results/tables/*.csv|md|tex|parquet,
results/figures/*.png|pdf. Imports: any earlier stage.
"""
