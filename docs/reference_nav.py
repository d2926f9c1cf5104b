"""mkdocs hook: the generated reference becomes the site's "Reference" section.

The reference pages live in ``generated/docs`` (reached through the ``docs/reference``
symlink) and their navigation in ``generated/mkdocs.nav.yml``, both written by ``pgweave
generate``; this hook appends that navigation, under ``reference/``, to the hand-written
guide's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from mkdocs.config.defaults import MkDocsConfig

NAV_FILE = Path("generated") / "mkdocs.nav.yml"
PREFIX = "reference/"


def prefixed(entry: Any) -> Any:
    """A navigation entry with every page path under ``reference/``."""
    if isinstance(entry, str):
        return PREFIX + entry
    if isinstance(entry, list):
        return [prefixed(item) for item in entry]
    if isinstance(entry, dict):
        return {title: prefixed(value) for title, value in entry.items()}
    return entry


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Append the generated reference navigation to the configured one."""
    root = Path(config.config_file_path).parent
    generated = yaml.safe_load((root / NAV_FILE).read_text(encoding="utf-8"))
    config.nav = [*(config.nav or []), {"Reference": prefixed(generated["nav"])}]
    return config
