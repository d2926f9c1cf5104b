"""pgweave: a PostgreSQL-native DAG workflow engine compatible with pgflow's SQL core."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The checkout pgweave runs from (spec/, generated/ and templates/ live here)."""
