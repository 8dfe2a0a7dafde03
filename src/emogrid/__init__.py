"""emogrid: declarative fine-tuning studies for emotion classification."""

from emogrid import quiet as _quiet

__version__ = "0.1.0"

_quiet.install()  # known import-time noise of pinned dependencies (emogrid.quiet)
