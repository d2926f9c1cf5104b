"""The intermediate model: canonical, frozen, everything derived and cross-checked.

Renderers read only this model. It is built from a validated ``Spec`` by ``build_ir``
(see ``pgweave_generator.build``); everything here is plain data that can be serialised.

Migration snapshots (``generated/snapshots/*.json``, see ``pgweave_generator.snapshot``) are this
model as JSON: a field added once snapshots exist needs a default, so older snapshots
still load (a missing field without one is reported by name). A field whose metadata says
``snapshot: False`` (client-only options, also left out of comparisons) is not recorded; a
field marked ``OPTIONAL`` is left out of a snapshot while it holds its default, so adding it
leaves the recorded snapshots byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from pgweave_generator.sql_types import TypeRef

OPTIONAL = {"snapshot": "omit-default"}
"""Field metadata: snapshots leave the field out while it holds its default."""


class ConstraintKind(StrEnum):
    """What a table constraint is."""

    PRIMARY_KEY = "primary key"
    UNIQUE = "unique"
    FOREIGN_KEY = "foreign key"
    CHECK = "check"


class ForeignKeyAction(StrEnum):
    """What a foreign key does when the referenced row is deleted or updated."""

    NO_ACTION = "no action"
    RESTRICT = "restrict"
    CASCADE = "cascade"
    SET_NULL = "set null"
    SET_DEFAULT = "set default"


class StateRule(StrEnum):
    """What a check derived from a state machine enforces."""

    IS_STATE = "is a state"  # the status column holds one of the machine's states
    ONE_TERMINAL_TIMESTAMP = "one terminal timestamp"  # at most one of the columns is set
    TIMESTAMP_ORDER = "timestamp order"  # the first column is null or not before the second


class Language(StrEnum):
    """The language of a function body."""

    SQL = "sql"
    PLPGSQL = "plpgsql"


class Volatility(StrEnum):
    """A function's volatility."""

    IMMUTABLE = "immutable"
    STABLE = "stable"
    VOLATILE = "volatile"


class Parallel(StrEnum):
    """A function's parallel safety."""

    SAFE = "safe"
    RESTRICTED = "restricted"
    UNSAFE = "unsafe"


class Security(StrEnum):
    """Whose rights a function runs with."""

    INVOKER = "invoker"
    DEFINER = "definer"


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
    initial_state: str | None = field(default=None, metadata=OPTIONAL)
    """A status column's default: its machine's initial state (``default`` is then None)."""

    @property
    def has_default(self) -> bool:
        """Whether an insert that leaves the column out gets a value other than null."""
        return self.default is not None or self.initial_state is not None


@dataclass(frozen=True)
class ForeignKeyIR:
    """Where a foreign key points and what it does on delete and update."""

    table: str
    columns: tuple[str, ...]
    on_delete: ForeignKeyAction = ForeignKeyAction.NO_ACTION
    on_update: ForeignKeyAction = ForeignKeyAction.NO_ACTION


@dataclass(frozen=True)
class StateCheckIR:
    """A check a state machine implies: its rule over the constraint's columns and, for
    ``IS_STATE``, the machine's states in declaration order."""

    rule: StateRule
    states: tuple[str, ...] = field(default=(), metadata=OPTIONAL)


@dataclass(frozen=True)
class ConstraintIR:
    """A named table constraint as data: key columns, a foreign key's target, a check.

    ``columns`` are the key's columns (primary key, unique, foreign key) or the columns a
    check mentions; ``calls`` the schema's functions a check expression calls. A check
    is either the spec's ``expression`` or, derived from a state machine, a ``state_check``
    over ``columns`` (for ``TIMESTAMP_ORDER`` the later timestamp first).
    """

    name: str
    kind: ConstraintKind
    columns: tuple[str, ...]
    expression: str | None = None  # checks written in the spec: the boolean expression
    references: ForeignKeyIR | None = None  # foreign keys
    calls: tuple[str, ...] = ()
    origin: str | None = None  # e.g. "state machine run" for derived checks
    doc: str | None = None
    state_check: StateCheckIR | None = field(default=None, metadata=OPTIONAL)


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
    json_object: tuple[AttributeIR, ...] | None = field(default=None, metadata=OPTIONAL)
    """The keys of a json/jsonb object result and their types (the client validates the
    object into a model); not part of the SQL signature."""

    @property
    def sql(self) -> ReturnsIR:
        """The result as SQL sees it (without the JSON object's keys)."""
        return replace(self, json_object=None)


@dataclass(frozen=True)
class FunctionIR:
    """A SQL function with its body text and the spec functions it calls."""

    name: str
    doc: str
    args: tuple[ArgumentIR, ...]
    returns: ReturnsIR
    language: Language
    volatility: Volatility
    parallel: Parallel
    security: Security
    search_path: str | None
    strict: bool
    body: str
    body_file: str
    internal: bool
    raises: tuple[str, ...]
    emits: tuple[str, ...]
    calls: tuple[str, ...]  # functions of the schema its body calls (parsed, in spec order)
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
class EventVariantIR:
    """A payload shape of an event: the keys some emitters add to its payload."""

    name: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class EventIR:
    """A realtime event; ``payload`` holds its keys, ``event_type`` first."""

    name: str
    doc: str
    event: str
    topic: str
    payload: tuple[str, ...]
    variants: tuple[EventVariantIR, ...] = ()


@dataclass(frozen=True)
class ExternalGrantIR:
    """Privileges a role needs outside the schema."""

    schema: str
    usage: bool
    execute_all_functions: bool
    table_privileges_all: tuple[str, ...]
    future_table_privileges: tuple[str, ...]


@dataclass(frozen=True)
class ImpliedExecuteIR:
    """A function a role may execute without the spec granting it, and why: a granted
    security-invoker function calls it, or a check of a table the role writes does."""

    function: str
    called_by: str | None = None
    checks_of: str | None = None


@dataclass(frozen=True)
class RoleIR:
    """A role and what it may do."""

    name: str
    doc: str
    login: bool
    execute: tuple[str, ...]
    tables: tuple[tuple[str, tuple[str, ...]], ...]
    external: tuple[ExternalGrantIR, ...]
    # Functions it needs without calling them itself (see ImpliedExecuteIR).
    implied_execute: tuple[ImpliedExecuteIR, ...] = ()

    def may_execute(self, function: str) -> bool:
        """Whether the role is granted EXECUTE on ``function`` (declared or implied)."""
        return function in self.execute or self.implied(function) is not None

    def implied(self, function: str) -> ImpliedExecuteIR | None:
        """Why the role needs ``function`` though the spec does not grant it (or None)."""
        return next((i for i in self.implied_execute if i.function == function), None)


class GrantTarget(StrEnum):
    """What a grant is on."""

    SCHEMA = "schema"  # usage on a schema
    FUNCTION = "function"  # execute on one function of the schema
    TABLE = "table"  # privileges on one table of the schema
    ALL_FUNCTIONS = "all functions"  # execute on all functions in another schema
    ALL_TABLES = "all tables"  # privileges on all tables in another schema
    FUTURE_TABLES = "future tables"  # default privileges on tables created later there


@dataclass(frozen=True)
class GrantIR:
    """One privilege grant to a role, as data (rendered as GRANT, undone by REVOKE).

    ``schema`` and ``name`` name the object (``name`` empty for schema-wide targets);
    ``arg_types`` identify a function; ``implied`` says why a grant the spec does not
    declare is needed.
    """

    role: str
    target: GrantTarget
    privileges: tuple[str, ...]
    schema: str
    name: str = ""
    arg_types: tuple[TypeRef, ...] = ()
    implied: ImpliedExecuteIR | None = None

    @property
    def key(self) -> GrantIR:
        """The grant without why: two grants with equal keys grant the same."""
        return replace(self, implied=None)


@dataclass(frozen=True)
class SchemaIR:
    """The whole database layer, in creation order where order matters."""

    schema: str
    min_postgres: int
    queue_provider: str | None  # None: the schema uses no queue
    queue_min_version: str | None
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

    def grants(self, role: RoleIR) -> tuple[GrantIR, ...]:
        """Everything ``role`` is granted, in the order the migration grants it."""
        s = self.schema
        grants = [GrantIR(role.name, GrantTarget.SCHEMA, ("usage",), s)]
        for function in self.all_functions:
            if role.may_execute(function.name):
                grants.append(
                    GrantIR(
                        role.name,
                        GrantTarget.FUNCTION,
                        ("execute",),
                        s,
                        function.name,
                        tuple(arg.type for arg in function.args),
                        role.implied(function.name),
                    )
                )
        for table, privileges in role.tables:
            grants.append(GrantIR(role.name, GrantTarget.TABLE, privileges, s, table))
        for g in role.external:
            if g.usage:
                grants.append(GrantIR(role.name, GrantTarget.SCHEMA, ("usage",), g.schema))
            if g.execute_all_functions:
                grants.append(GrantIR(role.name, GrantTarget.ALL_FUNCTIONS, ("execute",), g.schema))
            if g.table_privileges_all:
                grants.append(
                    GrantIR(role.name, GrantTarget.ALL_TABLES, g.table_privileges_all, g.schema)
                )
            if g.future_table_privileges:
                grants.append(
                    GrantIR(
                        role.name, GrantTarget.FUTURE_TABLES, g.future_table_privileges, g.schema
                    )
                )
        return tuple(grants)
