"""emogrid: declarative fine-tuning studies for emotion classification.

One package per pipeline stage, in the order a study flows through them; a stage imports only
earlier stages (tests/test_architecture.py checks it, and that no module import forms a cycle):

    study -> data -> models -> scheduling -> planning -> training -> results -> report

Top level: the command line (`cli`, and `cli_config`, the study options every subcommand
reads), `errors`, `atomic` writes, `package_data` (schemas, bundled model configs) and `quiet`
(known import-time noise of pinned dependencies).
"""

from emogrid import quiet as _quiet

__version__ = "0.1.0"

_quiet.install()  # known import-time noise of pinned dependencies (emogrid.quiet)
