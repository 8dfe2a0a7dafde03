"""Shared pytest fixtures (each group lives in its own conftest_*.py module)."""

from conftest_grid import finished_grid  # noqa: F401
from conftest_train import background_trainings, one_torch_thread, tiny_models, tiny_subset  # noqa: F401
