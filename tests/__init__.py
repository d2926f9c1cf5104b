"""pgweave's test suite (pytest, live PostgreSQL)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The checkout under test (spec/, generated/ and templates/ live here)."""
