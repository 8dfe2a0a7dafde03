"""emogrid: declarative fine-tuning studies for emotion classification.

One package per pipeline stage, in the order a study flows through them; a stage imports only
earlier stages (tests/test_architecture.py checks it, and that no module import forms a cycle):

    study -> data -> models -> scheduling -> planning -> training -> results -> report

Top level: the command line (`cli`, and `cli_config`, the study options every subcommand
reads), `errors`, `atomic` writes, `package_data` (schemas, bundled model configs) and `quiet`
(known import-time noise of pinned dependencies).

The Python API: `emogrid.open_study(results_dir)`, the tidy frames of a study's results
(emogrid.report.study_results; docs/RESULTS.md). It is imported on first use, so `import emogrid`
stays light (no pandas, no torch).
"""

from emogrid import quiet as _quiet

__version__ = "0.1.0"

_quiet.install()  # known import-time noise of pinned dependencies (emogrid.quiet)


def __getattr__(name: str):
    # the public API, imported on first use (PEP 562): `import emogrid` pays for no pandas
    if name == "open_study":
        from emogrid.report.study_results import open_study

        return open_study
    raise AttributeError(f"module 'emogrid' has no attribute {name!r}")
