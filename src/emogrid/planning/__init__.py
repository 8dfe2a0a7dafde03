"""Planning a study before spending: exact parameter counts and memory estimates per cell.

`structure` builds each model on the meta device and counts it; `memory` turns that and the
token lengths of `tokens` into a memory estimate (and GPU counts); `report` writes the plan
tables; `validation` checks the memory model against real CPU runs (each measured in a fresh
`measure_run` process). The `emogrid plan` command itself is `emogrid.plan`.
"""
