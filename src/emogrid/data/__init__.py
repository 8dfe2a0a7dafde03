"""Stage 2, data: the subsets every cell trains and evaluates on. Owns reading a dataset (the
GoEmotions layout or any local/hub table, through `reader`, the one door to
`datasets.load_dataset`), checking that a study's sources are readable (`checks`), drawing a
(k labels, n samples, seed) subset (`subset_selection`), writing it (`subset_writer`, the
`emogrid prepare` command in `prepare`), and downloading hub models and datasets (`fetch`).

Reads: dataset files or the hub, a study's dataset definitions (emogrid.study.datasets).
Writes: results/data/<dataset>/k<k>_n<n>_s<seed>/{train,val,test}.jsonl + manifest.json, and
fetch receipts. Imports: emogrid.study.
"""
