"""The one table that maps each PostgreSQL type of the spec to its SQL, Python and JSON forms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BaseType:
    """How one PostgreSQL base type appears in SQL, Python and JSON Schema."""

    sql: str
    python: str
    json_schema: tuple[tuple[str, Any], ...]


_TIMESTAMP = (("type", "string"), ("format", "date-time"))

BASE_TYPES: dict[str, BaseType] = {
    "text": BaseType("text", "str", (("type", "string"),)),
    "integer": BaseType("integer", "int", (("type", "integer"),)),
    "bigint": BaseType("bigint", "int", (("type", "integer"),)),
    "smallint": BaseType("smallint", "int", (("type", "integer"),)),
    "numeric": BaseType("numeric", "decimal.Decimal", (("type", "number"),)),
    "boolean": BaseType("boolean", "bool", (("type", "boolean"),)),
    "jsonb": BaseType("jsonb", "JsonValue", ()),
    "json": BaseType("json", "JsonValue", ()),
    "uuid": BaseType("uuid", "uuid.UUID", (("type", "string"), ("format", "uuid"))),
    "timestamptz": BaseType("timestamptz", "datetime.datetime", _TIMESTAMP),
    "interval": BaseType("interval", "datetime.timedelta", (("type", "string"),)),
    "void": BaseType("void", "None", (("type", "null"),)),
}

ALIASES: dict[str, str] = {
    "int": "integer",
    "int4": "integer",
    "int8": "bigint",
    "int2": "smallint",
    "bool": "boolean",
    "timestamp with time zone": "timestamptz",
}


@dataclass(frozen=True)
class TypeRef:
    """A resolved type reference: a base type or a spec-defined row/composite type, maybe an array."""

    name: str
    kind: str  # "base" | "table" | "composite"
    array: bool = False

    def sql(self, schema: str) -> str:
        """SQL spelling of the type, schema-qualified for spec-defined types."""
        text = self.name if self.kind == "base" else f"{schema}.{self.name}"
        return f"{text}[]" if self.array else text


def parse_type(text: str, tables: set[str], composites: set[str]) -> TypeRef | None:
    """Resolve a type written in the spec; None when it is unknown.

    Spec-defined types may be written bare (``runs``) or qualified by any schema prefix
    that the caller has already stripped; arrays are written with a ``[]`` suffix.
    """
    name = " ".join(text.strip().lower().split())
    array = name.endswith("[]")
    if array:
        name = name[:-2].rstrip()
    name = ALIASES.get(name, name)
    if name in BASE_TYPES:
        return TypeRef(name, "base", array)
    if name in tables:
        return TypeRef(name, "table", array)
    if name in composites:
        return TypeRef(name, "composite", array)
    return None
