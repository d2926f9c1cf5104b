"""Tests of pgweave as an installed product: the wheel, the editable install, CLI errors."""

from __future__ import annotations

import os


def clean_env() -> dict[str, str]:
    """The environment minus anything that could put the checkout on the import path."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PGWEAVE_DSN"}
    }
