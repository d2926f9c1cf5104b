"""Pydantic models of the spec file format (the *input*, kept apart from the IR).

Shorthands accepted by the YAML/JSON file (a column written as a bare type string, a
function returning ``"setof runs"`` …) are normalised in ``mode="before"`` validators, so
every error location stays a plain path of mapping keys and list indexes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

IDENTIFIER_PATTERN = r"^[a-z_][a-z0-9_]*$"
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN, max_length=63)]
EventName = Annotated[str, StringConstraints(pattern=r"^[a-z_]+:[a-z_]+$")]
ErrorName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
SqlText = Annotated[str, StringConstraints(min_length=1)]


def _sql_literal_text(value: Any) -> Any:
    """Accept YAML scalars (0, true, …) where SQL text is expected and turn them into text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


SqlDefault = Annotated[SqlText | None, BeforeValidator(_sql_literal_text)]
"""An SQL default expression; YAML scalars (0, true, …) are taken as their SQL text."""


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TypeShorthand(SpecModel):
    """Base of the models that may also be written as a bare type string (``{"type": …}``)."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"type": data}
        return data


class QueueSettings(SpecModel):
    """Which message queue the engine uses and the oldest version it accepts."""

    provider: Literal["pgmq"] = "pgmq"
    min_version: Annotated[str, StringConstraints(pattern=r"^\d+\.\d+$")] = "1.5"


PythonPackage = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*$", max_length=63)]
ClassPrefix = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Za-z0-9]*$", max_length=63)]


class Settings(SpecModel):
    """Project-wide settings."""

    schema_name: Identifier = Field(alias="schema")
    min_postgres: Annotated[int, Field(ge=13)] = 15
    queue: QueueSettings | None = Field(
        default=None,
        description=(
            "The message queue the functions use; the first migration then checks for it."
            " Omitted: the schema uses no queue."
        ),
    )
    install_command: str = Field(
        default="pgweave install-pgmq --dsn <DSN>",
        description="Command named by the migration's queue check when the queue is missing.",
    )
    python_package: PythonPackage | None = Field(
        default=None,
        description="Import name of the generated Python client; default: <schema>_client.",
    )
    class_prefix: ClassPrefix | None = Field(
        default=None,
        description=(
            "Prefix of the client's class names (<prefix>Client, Async<prefix>Client,"
            " <prefix>Error); default: the schema name in CamelCase."
        ),
    )
    docs_title: Annotated[str, StringConstraints(min_length=1)] | None = Field(
        default=None,
        description="Title of the generated reference docs; default: '<schema> reference'.",
    )


class Column(TypeShorthand):
    """One table column. Written as a bare type string or as a mapping."""

    type: str
    nullable: bool = True
    default: SqlDefault = None
    check: SqlText | None = Field(
        default=None,
        description="Column CHECK; gets PostgreSQL's default name <table>_<column>_check.",
    )
    doc: str | None = None
    renamed_from: Identifier | None = Field(
        default=None,
        description=(
            "The column's previous name: the next migration renames it instead of dropping"
            " and adding a column (a no-op once the rename is released)."
        ),
    )


class PrimaryKey(SpecModel):
    """Primary key; named <table>_pkey unless a name is given."""

    name: Identifier | None = None
    columns: list[Identifier] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, list):
            return {"columns": data}
        return data


class UniqueKey(SpecModel):
    """UNIQUE constraint; named <table>_<columns>_key unless a name is given."""

    name: Identifier | None = None
    columns: list[Identifier] = Field(min_length=1)


FkAction = Literal["no action", "restrict", "cascade", "set null", "set default"]


class ForeignKey(SpecModel):
    """FOREIGN KEY constraint; named <table>_<columns>_fkey unless a name is given."""

    name: Identifier | None = None
    columns: list[Identifier] = Field(min_length=1)
    references: Identifier
    ref_columns: list[Identifier] | None = Field(
        default=None, description="Referenced columns; default: the referenced primary key."
    )
    on_delete: FkAction = "no action"
    on_update: FkAction = "no action"


class Check(SpecModel):
    """A named table CHECK constraint."""

    name: Identifier
    expression: SqlText
    doc: str | None = None


class Index(SpecModel):
    """A (possibly partial, possibly unique) btree index."""

    name: Identifier
    columns: list[Identifier] = Field(min_length=1)
    unique: bool = False
    where: SqlText | None = None
    doc: str | None = None


class Table(SpecModel):
    """A table of the schema."""

    doc: str
    columns: dict[Identifier, Column] = Field(min_length=1)
    primary_key: PrimaryKey | None = None
    unique: list[UniqueKey] = []
    foreign_keys: list[ForeignKey] = []
    checks: list[Check] = []
    indexes: list[Index] = []
    renamed_from: Identifier | None = Field(
        default=None,
        description=(
            "The table's previous name: the next migration renames it instead of dropping"
            " and creating a table (a no-op once the rename is released)."
        ),
    )


class CompositeType(SpecModel):
    """A composite type (``create type … as (…)``)."""

    doc: str
    attributes: dict[Identifier, str] = Field(min_length=1)


class State(SpecModel):
    """One state of a state machine."""

    doc: str | None = None
    timestamp: Identifier | None = Field(
        default=None, description="Timestamp column set when the row enters this state."
    )
    after: list[Identifier] = Field(
        default=[],
        description=(
            "States whose timestamps this state's timestamp may not precede; each derives the "
            "check <timestamp>_is_after_<other timestamp>."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if data is None:
            return {}
        return data


class Transition(SpecModel):
    """A transition between states, performed by one or more functions."""

    from_: list[Identifier] = Field(
        alias="from", description="Source states; empty for the insert that creates a row."
    )
    to: Identifier
    by: list[Identifier] = Field(min_length=1, description="Functions that perform it.")
    doc: str | None = None

    @field_validator("from_", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        return value


class StateMachine(SpecModel):
    """A status column governed by a state machine; checks, enums and diagrams derive from it."""

    doc: str
    table: Identifier
    column: Identifier = "status"
    check_name: Identifier = Field(description="Name of the derived status CHECK constraint.")
    exclusive_timestamps_check: Identifier | None = Field(
        default=None,
        description=(
            "Name of the derived CHECK that at most one terminal timestamp is set "
            "(none derived when omitted)."
        ),
    )
    initial: Identifier
    terminal: list[Identifier] = Field(min_length=1)
    states: dict[Identifier, State] = Field(min_length=2)
    transitions: list[Transition] = Field(min_length=1)


class Argument(TypeShorthand):
    """A function argument. Written as a bare type string or as a mapping."""

    type: str
    default: SqlDefault = Field(default=None, description="SQL default expression.")
    doc: str | None = None


class Returns(SpecModel):
    """A function's result: a type, a set of a type, a table of columns, or void."""

    type: str | None = None
    setof: bool = False
    table: dict[Identifier, str] | None = None
    json_object: dict[Identifier, str] | None = Field(
        default=None,
        description=(
            "For a json/jsonb object result: its keys and their types (tables stand for"
            " their rows); the client validates the object into a model. The SQL result"
            " stays json/jsonb."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            text = data.strip()
            if text.lower().startswith("setof "):
                return {"type": text[6:].strip(), "setof": True}
            return {"type": text}
        return data

    @model_validator(mode="after")
    def _one_form(self) -> Returns:
        if (self.type is None) == (self.table is None):
            raise ValueError("give exactly one of 'type' or 'table'")
        if self.table is not None and self.setof:
            raise ValueError("'table' results are already sets; drop 'setof'")
        if self.json_object is not None and (self.type not in ("json", "jsonb") or self.setof):
            raise ValueError("'json_object' describes a single json or jsonb result")
        return self


class Function(SpecModel):
    """A SQL function: signature here, body in the SQL file named by ``body``."""

    doc: str
    args: dict[Identifier, Argument] = {}
    returns: Returns
    language: Literal["sql", "plpgsql"]
    volatility: Literal["immutable", "stable", "volatile"] = "volatile"
    parallel: Literal["safe", "restricted", "unsafe"] = "unsafe"
    security: Literal["invoker", "definer"] = "invoker"
    search_path: str | None = Field(
        default=None, description="Fixed search_path ('' for none); omitted: not set."
    )
    strict: bool = False
    body: str = Field(description="Path of the body's SQL file, relative to the spec file.")
    internal: bool = Field(
        default=False, description="Engine-internal: left out of the generated client."
    )
    raises: list[ErrorName] = []
    emits: list[EventName] = []
    client_variants: list[Literal["execrows", "raw"]] = Field(
        default=[],
        description=(
            "Extra client methods for hot paths that skip row validation (sqlc's :execrows "
            "and raw rows): 'execrows' adds <name>_execrows returning only the row count, "
            "'raw' adds <name>_raw returning the rows as plain dicts. Set-returning "
            "functions only."
        ),
    )

    @field_validator("client_variants")
    @classmethod
    def _variants_need_rows(cls, variants: list[str], info: ValidationInfo) -> list[str]:
        returns = info.data.get("returns")
        if variants and isinstance(returns, Returns) and not (returns.setof or returns.table):
            raise ValueError("client_variants need a set-returning function (setof or table)")
        return variants


class ErrorDef(SpecModel):
    """An error the engine raises: its SQLSTATE and message (or the constraint it names)."""

    doc: str
    sqlstate: Annotated[str, StringConstraints(pattern=r"^[0-9A-Z]{5}$")]
    message: str | None = Field(
        default=None, description="Message template; {placeholders} stand for variable parts."
    )
    constraint: Identifier | None = Field(
        default=None, description="For constraint violations: the constraint's name."
    )

    @model_validator(mode="after")
    def _message_or_constraint(self) -> ErrorDef:
        if (self.message is None) == (self.constraint is None):
            raise ValueError("give exactly one of 'message' or 'constraint'")
        return self


class EventDef(SpecModel):
    """A realtime event: its broadcast name, topic and typed payload keys.

    The payload always starts with ``event_type`` (the event's name in the spec); the
    generator makes one emitting helper per payload shape (``_emit_<event>`` and, for
    each variant, ``_emit_<event>_<variant>``) and bodies call those.
    """

    doc: str
    event: str = Field(description="Broadcast event name; {placeholders} stand for payload values.")
    topic: str = Field(description="Topic; {placeholders} stand for payload values.")
    payload: dict[Identifier, SqlText] = Field(
        min_length=1, description="Payload keys after event_type, each with its SQL type."
    )
    variants: dict[Identifier, dict[Identifier, SqlText]] = Field(
        default={},
        description=(
            "Payload shapes some emitters send: the keys (with their SQL types) they add to"
            " the payload."
        ),
    )


TablePrivilege = Literal["select", "insert", "update", "delete", "truncate", "references"]


class ExternalGrant(SpecModel):
    """Privileges on an object outside the schema (e.g. pgmq), needed by a role."""

    schema_name: Identifier = Field(alias="schema")
    usage: bool = True
    execute_all_functions: bool = False
    table_privileges_all: list[TablePrivilege] = Field(
        default=[], description="Privileges on the tables the schema holds at migration time."
    )
    future_table_privileges: list[TablePrivilege] = Field(
        default=[],
        description=(
            "Privileges on tables created in the schema later by the role that runs the"
            " migrations (ALTER DEFAULT PRIVILEGES), e.g. the queue tables of new flows."
        ),
    )


class Role(SpecModel):
    """A database role created by the migrations, with what it may do."""

    doc: str
    login: bool = False
    execute: list[Identifier] = Field(
        default=[],
        description=(
            "Functions it may call. The functions these call as the caller (security"
            " invoker) and the functions in checks of tables it may write are granted too."
        ),
    )
    tables: dict[Identifier, list[TablePrivilege]] = {}
    external: list[ExternalGrant] = []


class Spec(SpecModel):
    """The whole spec file."""

    version: Literal[1]
    settings: Settings
    types: dict[Identifier, CompositeType] = {}
    tables: dict[Identifier, Table] = Field(min_length=1)
    state_machines: dict[Identifier, StateMachine] = {}
    errors: dict[ErrorName, ErrorDef] = {}
    events: dict[EventName, EventDef] = {}
    functions: dict[Identifier, Function] = {}
    roles: dict[Identifier, Role] = {}
