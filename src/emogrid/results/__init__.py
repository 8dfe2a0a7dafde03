"""Stage 7, results: what the finished cells say. Owns collecting a runs tree into tidy frames
(`collect`: one row per cell, per class), summaries over seeds (`summary`), axis order
(`levels`), intervals and tests (`stats`, `uncertainty`), paired method comparisons
(`paired_comparisons`), the replication frame against published numbers (`replication`) and
where each model and dataset came from (`sources`), two results trees compared cell by cell
(`tree_diff`, for `emogrid diff`), a tuning group's choice on validation (`tune_select`, the
`emogrid tune-select` command) and a tuned study's candidates and compute (`tuning`).

Reads: results/runs/**/metrics.json and predictions.jsonl through emogrid.training.cell_files
(the contract the train job writes), results/tune/. Writes: nothing itself (emogrid.report
writes its frames), except `emogrid tune-select`: results/tune/<group>.json.
Imports: study, training.cell_files.
"""
