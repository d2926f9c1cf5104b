"""The intermediate model: canonical, frozen, everything derived and cross-checked.

Renderers read only this model. It is built from a validated ``Spec`` by ``build_ir``
(see ``generator.build``); everything here is plain data that can be serialised.

Migration snapshots (``generated/snapshots/*.json``, see ``generator.snapshot``) are this
model as JSON: a field added once snapshots exist needs a default, so older snapshots
still load (a missing field without one is reported by name). A field whose metadata says
``snapshot: False`` (client-only options, also left out of comparisons) is not recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from generator.sql_types import TypeRef


@dataclass(frozen=True)
class ColumnIR:
    """A table column with its resolved type and (possibly derived) default."""

    name: str
    type: TypeRef
    nullable: bool
    default: str | None
    doc: str | None
    state_machine: str | None = None
    renamed_from: str | None = None  # previous name, for the migration that renames it


@dataclass(frozen=True)
class ConstraintIR:
    """A named table constraint, rendered as ``constraint <name> <definition>``."""

    name: str
    kind: str  # "primary key" | "unique" | "foreign key" | "check"
    definition: str
    columns: tuple[str, ...]
    origin: str | None = None  # e.g. "state machine run" for derived checks
    doc: str | None = None


@dataclass(frozen=True)
class IndexIR:
    """A btree index, maybe unique, maybe partial."""

    name: str
    table: str
    columns: tuple[str, ...]
    unique: bool
    where: str | None
    doc: str | None


@dataclass(frozen=True)
class TableIR:
    """A table: columns in declaration order, constraints, indexes."""

    name: str
    doc: str
    columns: tuple[ColumnIR, ...]
    constraints: tuple[ConstraintIR, ...]
    indexes: tuple[IndexIR, ...]
    references: tuple[str, ...]  # tables this one's foreign keys point at
    renamed_from: str | None = None  # previous name, for the migration that renames it

    def column(self, name: str) -> ColumnIR:
        """The column called ``name``."""
        return next(column for column in self.columns if column.name == name)


@dataclass(frozen=True)
class AttributeIR:
    """A named, typed member: composite type attribute or table-result column."""

    name: str
    type: TypeRef


@dataclass(frozen=True)
class CompositeTypeIR:
    """A composite type."""

    name: str
    doc: str
    attributes: tuple[AttributeIR, ...]


@dataclass(frozen=True)
class StateIR:
    """One state of a state machine."""

    name: str
    doc: str | None
    timestamp: str | None
    initial: bool
    terminal: bool


@dataclass(frozen=True)
class TransitionIR:
    """A transition; an empty ``sources`` tuple is the insert that creates the row."""

    sources: tuple[str, ...]
    target: str
    by: tuple[str, ...]
    doc: str | None


@dataclass(frozen=True)
class StateMachineIR:
    """A status column's state machine."""

    name: str
    doc: str
    table: str
    column: str
    states: tuple[StateIR, ...]
    transitions: tuple[TransitionIR, ...]

    @property
    def initial(self) -> StateIR:
        """The state a new row starts in."""
        return next(state for state in self.states if state.initial)


@dataclass(frozen=True)
class ArgumentIR:
    """A function argument."""

    name: str
    type: TypeRef
    default: str | None
    doc: str | None


@dataclass(frozen=True)
class ReturnsIR:
    """A function result: ``type`` (maybe ``setof``) or ``table`` columns."""

    type: TypeRef | None
    setof: bool
    table: tuple[AttributeIR, ...] | None


@dataclass(frozen=True)
class FunctionIR:
    """A SQL function with its body text and the spec functions it calls."""

    name: str
    doc: str
    args: tuple[ArgumentIR, ...]
    returns: ReturnsIR
    language: str
    volatility: str
    parallel: str
    security: str
    search_path: str | None
    strict: bool
    body: str
    body_file: str
    internal: bool
    raises: tuple[str, ...]
    emits: tuple[str, ...]
    calls: tuple[str, ...]
    transitions: tuple[str, ...]  # "<machine>: <from>|insert → <to>" performed by this function
    # Extra client methods ("execrows", "raw"): client-only, so neither recorded in snapshots
    # nor part of what makes two schemas equal.
    client_variants: tuple[str, ...] = field(
        default=(), compare=False, metadata={"snapshot": False}
    )


@dataclass(frozen=True)
class ErrorIR:
    """An error the engine raises."""

    name: str
    doc: str
    sqlstate: str
    message: str | None
    constraint: str | None


@dataclass(frozen=True)
class EventIR:
    """A realtime event."""

    name: str
    doc: str
    event: str
    topic: str
    payload: tuple[str, ...]


@dataclass(frozen=True)
class ExternalGrantIR:
    """Privileges a role needs outside the schema."""

    schema: str
    usage: bool
    execute_all_functions: bool
    table_privileges_all: tuple[str, ...]
    future_table_privileges: tuple[str, ...]


@dataclass(frozen=True)
class RoleIR:
    """A role and what it may do."""

    name: str
    doc: str
    login: bool
    execute: tuple[str, ...]
    tables: tuple[tuple[str, tuple[str, ...]], ...]
    external: tuple[ExternalGrantIR, ...]
    # Functions it needs without calling them itself, each with why: called by a granted
    # security-invoker function, or used by a check of a table it may write.
    implied_execute: tuple[tuple[str, str], ...] = ()

    def grant_reason(self, function: str) -> str | None:
        """Why the role may execute ``function``: '' when declared, None when it may not."""
        if function in self.execute:
            return ""
        return dict(self.implied_execute).get(function)


@dataclass(frozen=True)
class SchemaIR:
    """The whole database layer, in creation order where order matters."""

    schema: str
    min_postgres: int
    queue_provider: str
    queue_min_version: str
    install_command: str
    types: tuple[CompositeTypeIR, ...]
    check_functions: tuple[FunctionIR, ...]  # needed by table checks: created before tables
    tables: tuple[TableIR, ...]  # foreign-key order
    functions: tuple[FunctionIR, ...]  # call order (callees first)
    state_machines: tuple[StateMachineIR, ...]
    errors: tuple[ErrorIR, ...]
    events: tuple[EventIR, ...]
    roles: tuple[RoleIR, ...]

    @property
    def all_functions(self) -> tuple[FunctionIR, ...]:
        """Every function, in creation order."""
        return self.check_functions + self.functions
