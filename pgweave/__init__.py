"""pgweave: a PostgreSQL-native DAG workflow engine compatible with pgflow's SQL core."""

from __future__ import annotations

from importlib.metadata import version

__version__ = version("pgweave")
"""The installed version (pyproject.toml is the one place it is written)."""
