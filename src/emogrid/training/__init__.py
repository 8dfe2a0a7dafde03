"""Stage 6, training: one grid cell, trained and evaluated. `emogrid.training.train` is the
`emogrid train` command; `run_cell` calls the steps in order: read the subset (`cell_data`),
build the model (`build`), fit it (`fit`, with `trainer`, `arguments`, `callbacks`, `signals`,
LoRA+ in `loraplus`, batching in `sampling` and `chunking`), evaluate it (`evaluate`, metrics in
`metrics`), write its files (`write`, `efficiency`, `provenance`, training health from the
logged loss in `health`); `checkpoint_policy` keeps one
resumable checkpoint and the best weights while it trains; `failures` records a failed attempt
(merging the ranks' records under torchrun) and plans the retry; `distributed` runs one cell over
several GPUs, its ranks agreeing on stops and checkpoints; `tracking` sends
live curves to TensorBoard / W&B. `cell_files` is the contract of a cell folder: every later
stage reads metrics.json and predictions.jsonl through it.

Reads: a subset directory and a cell spec (a tuning cell's never opens test.jsonl). Writes:
results/runs/<cell>/ or results/tune/cells/<budget>/<cell>/ (spec.json, metrics.json,
predictions.jsonl, train_log.jsonl, run.log, adapter/). Imports: study, data, models,
scheduling, planning.
"""
