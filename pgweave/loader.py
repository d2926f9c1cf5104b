"""Find flows by reference: ``package.module:attribute`` or ``path/to/file.py:attribute``."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from pgweave.dsl import Flow


class FlowLoadError(LookupError):
    """A flow reference cannot be resolved to a Flow."""


def load_flow(reference: str) -> Flow[Any]:
    """Import the module of ``MODULE:ATTR`` (the working directory is importable) and return ATTR.

    ATTR may be dotted (``module:flows.website``). A bare ``MODULE`` works when the module
    defines exactly one Flow at top level.
    """
    module_ref, _, attr = reference.partition(":")
    if not module_ref:
        raise FlowLoadError(f"invalid flow reference {reference!r}: want MODULE:FLOW")
    module = _import(module_ref, reference)
    if not attr:
        found = [v for v in vars(module).values() if isinstance(v, Flow)]
        if len(found) != 1:
            names = ", ".join(k for k, v in vars(module).items() if isinstance(v, Flow))
            raise FlowLoadError(
                f"{reference!r}: name the flow as MODULE:FLOW "
                f"(module defines {len(found)} flows{': ' + names if names else ''})"
            )
        return found[0]
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise FlowLoadError(f"{reference!r}: {module_ref} has no attribute {attr!r}") from None
    if not isinstance(value, Flow):
        raise FlowLoadError(f"{reference!r} is a {type(value).__name__}, not a pgweave Flow")
    return value


def _import(module_ref: str, reference: str) -> Any:
    if module_ref.endswith(".py") or os.sep in module_ref:
        path = Path(module_ref).resolve()
        if not path.exists():
            raise FlowLoadError(f"{reference!r}: no such file {path}")
        name = f"pgweave_flow_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise FlowLoadError(f"{reference!r}: cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_ref)
    except ModuleNotFoundError as exc:
        if exc.name and module_ref.startswith(exc.name):
            raise FlowLoadError(f"{reference!r}: module {module_ref!r} not found ({exc})") from exc
        raise
