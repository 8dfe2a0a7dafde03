"""What SIGTERM and SIGINT do to a training cell. While it trains, SIGTERM (SLURM preemption or
time limit) asks for a checkpoint at the next step end and then `Preempted`; from the moment
its results are written, both are recorded instead of acted on, so a finished cell exits 0.
"""

from __future__ import annotations

import threading


class Preempted(BaseException):
    """SIGTERM during training: a checkpoint was saved, outputs were not written."""


class SigtermCheckpoint:
    """While training, SIGTERM (SLURM preemption/timeout) requests a checkpoint at the next step end.

    Owns the request: `requested` turns True on SIGTERM inside the `with` block (this process
    only). Under torchrun the signal reaches the ranks at different moments, so no rank acts on
    its own flag: `agreed()` all-reduces it (every rank calls it at each step end, in
    `callbacks.SigtermSave`, and once after training) and `stopping` is the agreed answer, the
    same on every rank, so all of them enter the save path (a barrier, FSDP's state-dict
    collectives) at the same step."""

    def __init__(self):
        self.requested = False
        self.stopping = False

    def agreed(self) -> bool:
        """Whether any rank was asked to stop (a collective under torchrun; every rank calls it at
        the same point). Once agreed, it stays agreed."""
        from emogrid.training import distributed

        self.stopping = distributed.any_rank(self.requested or self.stopping)
        return self.stopping

    def __enter__(self):
        import signal

        self.previous = signal.signal(signal.SIGTERM, self._handler)
        return self

    def _handler(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        import signal

        signal.signal(signal.SIGTERM, self.previous)
        return False


class finishing:  # noqa: N801 - a context manager
    """From the moment metrics.json is about to be written until the job exits, SIGINT and
    SIGTERM are recorded instead of acted on: a cell whose results are in place always exits
    0 (Ctrl-C or a preemption landing in that split second must not make Snakemake throw the
    finished results away). Before that moment nothing changes: an interrupt stops training
    and the checkpoint stays for the resume."""

    def __enter__(self):
        self.signals: list[int] = []
        self.previous: dict = {}
        return self

    def __call__(self):  # on_finishing: results are about to be written
        import signal

        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, lambda signum, frame: self.signals.append(signum))

    def __exit__(self, *exc):
        import signal

        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False
