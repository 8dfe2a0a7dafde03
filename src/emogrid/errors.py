"""User-facing errors: raised for bad config, bad data or an impossible request.

The CLI turns an EmogridError into a one-paragraph message and exit code 2, never a
traceback. Anything else is a bug and keeps its traceback.
"""


class EmogridError(Exception):
    """An error the user can fix; the message says where (key, file, line) and what was expected."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n  hint: {self.hint}" if self.hint else base


class ConfigError(EmogridError):
    """The study config is invalid."""


class DataError(EmogridError):
    """The dataset is missing, malformed, or can't satisfy the request."""


class CellError(EmogridError):
    """A training cell failed in a way a retry won't fix (bad model path, bad method for model)."""


class NaNLossError(EmogridError):
    """Training loss became NaN/inf."""
