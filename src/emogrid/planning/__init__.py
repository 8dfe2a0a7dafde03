"""Stage 5, planning: a study sized before anything is spent. Owns exact parameter counts on the
meta device (`structure`), the memory model and GPU counts (`memory`, with token lengths from
`tokens`), each training job's resources completed by the plan (`job_resources`), the checks
that need a model's structure (`precheck`), every check a study passes before it runs, in one
message (`study_check`), the download sizes (`downloads`), the plan tables
(`report`), the memory model checked against real CPU runs (`validation`, `measure_run`), and
the commands that look at a study before it runs: `emogrid plan` (`plan`) and `emogrid grid`
(`grid_command`).

Reads: the study, bundled model configs, fetch receipts. Writes: results/plan/*.csv|md.
Imports: study, data, models, scheduling.
"""
