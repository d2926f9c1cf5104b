"""pgweave's benchmark suite: ``python -m bench`` (see bench/README.md)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The checkout the benchmarks run from (bench/out/ and the peer's virtualenv live here)."""
