"""Datasets as a grid axis: built-in definitions (`registry`) and one loader (`load`).

`registry.resolve_dataset(name, config)` turns a name of `grid.datasets` into a complete,
JSON-able definition (source, column mapping, splits, subset settings); `load.load_table`
reads it through `datasets.load_dataset` into the splits `emogrid.data` draws subsets from.
"""
