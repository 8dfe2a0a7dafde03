"""Training one grid cell, in the order `emogrid.train.run_cell` calls the steps: read the
subset (`cell_data`), build the model (`build`), fit it (`fit`, with `trainer`, `arguments`,
`callbacks`, `signals`), evaluate it (`evaluate`), write its files (`write`, `efficiency`,
`provenance`); `failures` records a failed attempt and plans the retry.
"""
