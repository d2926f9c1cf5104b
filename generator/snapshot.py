"""Snapshots: the intermediate model each migration installs, as canonical JSON.

``generated/snapshots/NNNN_name.json`` records what the database holds after migration
``NNNN_name``; migration N is planned from snapshot N-1 to snapshot N, so every migration
can be re-rendered (and checked) without a database. The JSON is the IR itself (function
bodies included), written with sorted keys so it is byte-for-byte reproducible.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, replace
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

from pgweave_generator.ir import (
    OPTIONAL,
    ColumnIR,
    ConstraintIR,
    SchemaIR,
    StateCheckIR,
    StateMachineIR,
    StateRule,
)
from pgweave_generator.render import GeneratedFile
from pgweave_generator.render.sql import check_expression
from pgweave_generator.sql_analysis import (
    SqlSyntaxError,
    called_functions,
    foreign_key,
    parse_expression,
)
from pgweave_generator.templating import sql_literal

SNAPSHOTS_DIR = "snapshots"
MIGRATIONS_DIR = "migrations"
SUM_FILE = f"{MIGRATIONS_DIR}/pgweave.sum"
FORMAT = 3  # still read: 1 (constraints as SQL text), 2 (state machines' checks as SQL text)
SNAPSHOT_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.json$")
MIGRATION_LABEL = re.compile(r"^[a-z0-9_]+$")


class SnapshotError(ValueError):
    """A snapshot file (or the set of them) cannot be used."""


@dataclass(frozen=True)
class Snapshot:
    """One recorded migration: its number, name and the schema it installs."""

    number: int
    name: str
    schema: SchemaIR

    @property
    def stem(self) -> str:
        """``NNNN_name``: the file name of the snapshot and of its migration."""
        return f"{self.number:04d}_{self.name}"

    @property
    def path(self) -> str:
        """Where the snapshot lives under the output directory."""
        return f"{SNAPSHOTS_DIR}/{self.stem}.json"

    @property
    def migration_path(self) -> str:
        """Where its migration lives under the output directory."""
        return f"{MIGRATIONS_DIR}/{self.stem}.sql"


# -- IR <-> plain data -------------------------------------------------------------------
def to_data(value: Any) -> Any:
    """Plain JSON data of an IR value: dataclasses become objects, tuples lists.

    Multi-line text (function bodies) becomes a list of lines, so a snapshot's diff in
    review shows the lines that changed.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_data(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.metadata.get("snapshot", True) is not False
            and not (f.metadata == OPTIONAL and getattr(value, f.name) == f.default)
        }
    if isinstance(value, tuple | list):
        return [to_data(item) for item in value]
    if isinstance(value, str) and "\n" in value:
        return value.split("\n")
    if value is None or isinstance(value, str | int | bool):
        return value
    raise SnapshotError(f"cannot record {type(value).__name__} in a snapshot")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_data(kind: Any, data: Any, where: str = "schema") -> Any:
    """Rebuild a value of type ``kind`` (an IR annotation) from plain data."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if data is None and len(options) < len(typing.get_args(kind)):
            return None
        if len(options) != 1:
            raise SnapshotError(f"{where}: unsupported type {kind}")
        return from_data(options[0], data, where)
    if origin is tuple:
        if not isinstance(data, list):
            raise SnapshotError(f"{where}: expected a list")
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_data(args[0], item, f"{where}[{i}]") for i, item in enumerate(data))
        if len(args) != len(data):
            raise SnapshotError(f"{where}: expected {len(args)} items")
        return tuple(
            from_data(arg, item, f"{where}[{i}]")
            for i, (arg, item) in enumerate(zip(args, data, strict=True))
        )
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if not isinstance(data, dict):
            raise SnapshotError(f"{where}: expected an object")
        fields = {f.name: f for f in dataclasses.fields(kind)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise SnapshotError(f"{where}: unknown field(s) {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, field in fields.items():
            if name in data:
                values[name] = from_data(_hints(kind)[name], data[name], f"{where}.{name}")
            elif field.default is dataclasses.MISSING:
                raise SnapshotError(
                    f"{where}: field '{name}' is missing (recorded by an older pgweave; "
                    "give the new IR field a default)"
                )
        return kind(**values)
    if kind is str and isinstance(data, list) and all(isinstance(line, str) for line in data):
        return "\n".join(data)
    if isinstance(kind, type) and issubclass(kind, Enum):
        try:
            return kind(data)
        except ValueError:
            raise SnapshotError(f"{where}: unknown value {data!r}") from None
    if kind in (str, int, bool):
        if type(data) is not kind:
            raise SnapshotError(f"{where}: expected {kind.__name__}")
        return data
    raise SnapshotError(f"{where}: unsupported type {kind}")


def _upgrade_format_1(schema: dict[str, Any], file_name: str) -> dict[str, Any]:
    """Format 1 kept each constraint as its SQL ``definition`` (read it into data) and
    each function's transitions as text (derived from the state machines now)."""
    function_list = schema.get("check_functions", []) + schema.get("functions", [])
    for function in function_list:
        function.pop("transitions", None)
    functions = [f.get("name") for f in function_list]
    for role in schema.get("roles", []):  # [function, "called by f" | "checks of t"]
        role["implied_execute"] = [
            {"function": function, why.replace(" ", "_", 1).split(" ")[0]: why.split(" ")[-1]}
            for function, why in role.get("implied_execute", [])
        ]
    for table in schema.get("tables", []):
        upgraded = []
        for constraint in table.get("constraints", []):
            constraint = dict(constraint)
            definition = str(constraint.pop("definition", ""))
            try:
                if constraint.get("kind") == "check":
                    expression = definition.removeprefix("check (").removesuffix(")")
                    constraint["expression"] = expression
                    called = called_functions(parse_expression(expression))
                    constraint["calls"] = [
                        f for f in functions if (schema.get("schema"), f) in called
                    ]
                elif constraint.get("kind") == "foreign key":
                    constraint["references"] = foreign_key(definition)
            except SqlSyntaxError as exc:
                raise SnapshotError(
                    f"{file_name}: constraint {constraint.get('name')}: {exc}"
                ) from None
            upgraded.append(constraint)
        table["constraints"] = upgraded
    return schema


def _typed_default(column: ColumnIR, machines: dict[str, StateMachineIR]) -> ColumnIR:
    machine = machines.get(column.state_machine or "")
    if machine is None or column.default is None:
        return column
    initial = machine.initial.name
    if column.default != sql_literal(initial):
        raise SnapshotError(f"status column {column.name}: default is not '{initial}'")
    return replace(column, default=None, initial_state=initial)


def _typed_check(constraint: ConstraintIR, machines: dict[str, StateMachineIR]) -> ConstraintIR:
    if constraint.origin is None or constraint.state_check is not None:
        return constraint
    machine = machines.get(constraint.origin.removeprefix("state machine "))
    states = () if machine is None else tuple(state.name for state in machine.states)
    count = len(constraint.columns)
    candidates = [StateCheckIR(StateRule.ONE_TERMINAL_TIMESTAMP)]
    candidates += [StateCheckIR(StateRule.IS_STATE, states)] if count == 1 else []
    candidates += [StateCheckIR(StateRule.TIMESTAMP_ORDER)] if count == 2 else []
    for candidate in candidates:
        typed = replace(constraint, expression=None, state_check=candidate)
        if check_expression(typed) == constraint.expression:
            return typed
    raise SnapshotError(f"check {constraint.name}: not a rule of {constraint.origin}")


def _upgrade_format_2(schema: SchemaIR, file_name: str) -> SchemaIR:
    """Format 2 kept the checks and status defaults derived from state machines as SQL
    text: each becomes the rule (or initial state) whose spelling is the recorded text."""
    machines = {machine.name: machine for machine in schema.state_machines}
    try:
        tables = tuple(
            replace(
                table,
                columns=tuple(_typed_default(c, machines) for c in table.columns),
                constraints=tuple(_typed_check(c, machines) for c in table.constraints),
            )
            for table in schema.tables
        )
    except SnapshotError as exc:
        raise SnapshotError(f"{file_name}: {exc}") from None
    return replace(schema, tables=tables)


def dumps(snapshot: Snapshot) -> str:
    """The canonical JSON text of a snapshot."""
    document = {
        "$comment": (
            f"Code generated by pgweave migration new: the schema after migration "
            f"{snapshot.stem}. DO NOT EDIT."
        ),
        "format": FORMAT,
        "migration": snapshot.stem,
        "schema": to_data(snapshot.schema),
    }
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def loads(text: str, file_name: str) -> Snapshot:
    """Parse a snapshot file's text; ``file_name`` gives its number and name."""
    match = SNAPSHOT_NAME.match(file_name)
    if match is None:
        raise SnapshotError(f"{file_name}: want snapshots named NNNN_name.json")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"{file_name}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") not in (1, 2, FORMAT):
        raise SnapshotError(f"{file_name}: not a format {FORMAT} pgweave snapshot")
    data = document.get("schema")
    if document["format"] == 1 and isinstance(data, dict):
        data = _upgrade_format_1(data, file_name)
    schema = from_data(SchemaIR, data, f"{file_name}: schema")
    if document["format"] < FORMAT:
        schema = _upgrade_format_2(schema, file_name)
    return Snapshot(int(match.group(1)), match.group(2), schema)


def load_history(out_dir: Path) -> list[Snapshot]:
    """The recorded snapshots in order; they must be numbered 0001, 0002, … without gaps."""
    directory = out_dir / SNAPSHOTS_DIR
    if not directory.is_dir():
        return []
    history = [
        loads(path.read_text(encoding="utf-8"), path.name)
        for path in sorted(directory.iterdir())
        if path.is_file()
    ]
    for expected, snapshot in enumerate(history, start=1):
        if snapshot.number != expected:
            clash = [s.stem for s in history if s.number == snapshot.number]
            if len(clash) > 1:
                raise SnapshotError(
                    f"two migrations are numbered {snapshot.number:04d} ({', '.join(clash)}), "
                    "as after merging two branches that both added one: delete yours from "
                    f"{directory}, run `pgweave generate`, then `pgweave migration new` again"
                )
            raise SnapshotError(
                f"snapshot {snapshot.stem} should be numbered {expected:04d} "
                f"(snapshots in {directory} must be consecutive)"
            )
    return history


def render_snapshot(snapshot: Snapshot) -> GeneratedFile:
    """The snapshot as the file ``generate`` keeps (canonical, so hand edits show up)."""
    return GeneratedFile(snapshot.path, dumps(snapshot))


def _h1(content: str) -> str:
    return "h1:" + hashlib.sha256(content.encode("utf-8")).hexdigest()


def render_sum(files: list[GeneratedFile]) -> GeneratedFile:
    """``migrations/pgweave.sum``: a hash per migration and snapshot plus one over them all.

    Like Atlas' atlas.sum: two branches that each add a migration both change the first
    line (and append different lines), so git reports a conflict instead of merging two
    migrations with the same number silently.
    """
    lines = [
        f"{file.path} {_h1(file.content)}"
        for file in sorted(files, key=lambda f: f.path)
        if file.path.startswith((f"{MIGRATIONS_DIR}/", f"{SNAPSHOTS_DIR}/"))
        and file.path != SUM_FILE
    ]
    body = "".join(f"{line}\n" for line in lines)
    return GeneratedFile(SUM_FILE, f"{_h1(body)}\n{body}")
