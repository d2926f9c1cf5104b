"""Read a spec file (YAML or JSON) into plain data, remembering the line of every node."""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pgweave_generator.diagnostics import Path_, SpecError, SpecIssue, did_you_mean
from pgweave_generator.spec_model import Spec


@dataclass(frozen=True)
class SourceMap:
    """Maps a location in the spec data to the file and line it came from."""

    file: Path
    lines: dict[Path_, int]

    def issue(self, path: Path_, message: str) -> SpecIssue:
        """Build an issue for ``path``, pointing at the nearest enclosing node's line."""
        probe = tuple(path)
        while probe and probe not in self.lines:
            probe = probe[:-1]
        return SpecIssue(path, message, self.file, self.lines.get(probe))


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec with where it came from."""

    spec: Spec
    source: SourceMap

    @property
    def root(self) -> Path:
        """Directory the spec's relative paths (function bodies) are resolved against."""
        return self.source.file.parent


def _read_nodes(text: str, file: Path) -> tuple[Any, dict[Path_, int]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise SpecError([SpecIssue((), f"not valid YAML/JSON: {exc}", file, line)]) from exc
    finally:
        loader.dispose()
    if node is None:
        raise SpecError([SpecIssue((), "the spec file is empty", file, 1)])
    lines: dict[Path_, int] = {}
    issues: list[SpecIssue] = []

    def walk(current: yaml.Node, path: Path_) -> Any:
        lines[path] = current.start_mark.line + 1
        if isinstance(current, yaml.MappingNode):
            loader.flatten_mapping(current)
            result: dict[Any, Any] = {}
            for key_node, value_node in current.value:
                key = loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    key = str(key)
                if key in result:
                    issues.append(
                        SpecIssue((*path, key), "duplicate key", file, key_node.start_mark.line + 1)
                    )
                    continue
                result[key] = walk(value_node, (*path, key))
            return result
        if isinstance(current, yaml.SequenceNode):
            return [walk(item, (*path, index)) for index, item in enumerate(current.value)]
        return loader.construct_object(current, deep=True)

    data = walk(node, ())
    if issues:
        raise SpecError(issues)
    return data, lines


def load_spec(file: Path) -> LoadedSpec:
    """Load and validate the spec's structure (cross-references are checked by the IR builder)."""
    file = Path(file)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([SpecIssue((), f"cannot read spec: {exc.strerror}", file)]) from exc
    data, lines = _read_nodes(text, file)
    source = SourceMap(file, lines)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(
            [
                source.issue(tuple(p for p in err["loc"] if p != "[key]"), _pydantic_message(err))
                for err in exc.errors()
            ]
        ) from exc
    return LoadedSpec(spec, source)


def _pydantic_message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        *where, key = (p for p in err["loc"] if p != "[key]")
        return "unknown key" + did_you_mean(str(key), _keys_at(tuple(where)))
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern", "")
        return f"{json.dumps(err.get('input'))} is not a valid name (must match {pattern})"
    if err["type"] == "literal_error":
        return f"{err['msg'].lower()}, got {json.dumps(err.get('input'))}"
    message = str(err["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return message[:1].lower() + message[1:]


def _keys_at(path: Path_) -> set[str]:
    """The keys the spec format allows in the mapping at ``path`` (for suggestions)."""
    kinds: list[Any] = [Spec]
    for part in path:
        kinds = [inner for kind in kinds for inner in _inside(kind, part)]
    return {
        field.alias or name
        for kind in kinds
        if isinstance(kind, type) and issubclass(kind, BaseModel)
        for name, field in kind.model_fields.items()
    }


def _inside(kind: Any, part: str | int) -> list[Any]:
    """The types that may appear at ``part`` inside a value of type ``kind``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        members = args if origin is not typing.Annotated else args[:1]
        return [inner for member in members for inner in _inside(member, part)]
    if isinstance(kind, type) and issubclass(kind, BaseModel) and isinstance(part, str):
        return [
            field.annotation
            for name, field in kind.model_fields.items()
            if part in (name, field.alias)
        ]
    if origin is dict and isinstance(part, str):
        return [args[1]]
    if origin is list and isinstance(part, int):
        return [args[0]]
    return []
