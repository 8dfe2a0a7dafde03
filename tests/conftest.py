"""Shared pytest fixtures (each group lives in its own conftest_*.py module)."""

from conftest_train import tiny_models, tiny_subset  # noqa: F401
