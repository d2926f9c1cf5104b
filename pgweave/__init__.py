"""pgweave: a PostgreSQL-native DAG workflow engine compatible with pgflow's SQL core."""

from __future__ import annotations

from importlib.metadata import version

from pgweave.dsl import RetryAfter, StepContext

__version__ = version("pgweave")
"""The installed version (pyproject.toml is the one place it is written)."""

__all__ = ["RetryAfter", "StepContext", "__version__"]
