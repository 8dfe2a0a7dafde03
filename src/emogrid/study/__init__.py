"""Stage 1, the study: what to run. Owns the config (loading by the study rule, the JSON schema
and its defaults, the checks a schema can't express, the report.reference file: `reference`),
the registries a study names from (methods, models, datasets, GoEmotions taxonomies), grid
expansion into cells with their specs, cell ids, and the recipe (each value, where it was set,
what the paper states), and the `tune:` section (`tune_config`: its checks; `tuning`:
tuning cells, selection jobs and the study's cells with the chosen values).

Reads: the study's YAML files, the package's schema and a tuned study's choice files
(results/tune/<group>.json). Writes: nothing (pure functions; the
Snakefile and every command call them). Imports: only the top-level modules of `emogrid`.
"""
