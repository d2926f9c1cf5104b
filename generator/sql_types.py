"""The one table that maps each PostgreSQL type of the spec to its SQL, Python and JSON forms."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BaseType:
    """How one PostgreSQL base type appears in SQL, Python and JSON Schema.

    ``python`` is the type a value read from the database has (psycopg's loaders),
    ``python_write`` what the generated client accepts as an argument of that type, and
    ``model_type`` the dotted type the model generator is told to use where the JSON
    Schema alone is less precise (``customTypePath``), or None.
    """

    sql: str
    python: str
    json_schema: tuple[tuple[str, Any], ...]
    python_write: str = ""
    model_type: str | None = None

    @property
    def write(self) -> str:
        """The argument type of the generated client (the read type unless given)."""
        return self.python_write or self.python


_TIMESTAMP = (("type", "string"), ("format", "date-time"))

BASE_TYPES: dict[str, BaseType] = {
    "text": BaseType("text", "str", (("type", "string"),)),
    "integer": BaseType("integer", "int", (("type", "integer"),)),
    "bigint": BaseType("bigint", "int", (("type", "integer"),)),
    "smallint": BaseType("smallint", "int", (("type", "integer"),)),
    "numeric": BaseType(
        "numeric",
        "decimal.Decimal",
        (("type", "number"),),
        "decimal.Decimal | int | float",
        "decimal.Decimal",
    ),
    "boolean": BaseType("boolean", "bool", (("type", "boolean"),)),
    "jsonb": BaseType("jsonb", "JsonValue", (), "JsonInput | Jsonb", "pydantic.JsonValue"),
    "json": BaseType("json", "JsonValue", (), "JsonInput | Json", "pydantic.JsonValue"),
    "uuid": BaseType("uuid", "uuid.UUID", (("type", "string"), ("format", "uuid"))),
    "timestamptz": BaseType("timestamptz", "datetime.datetime", _TIMESTAMP),
    "interval": BaseType(
        "interval", "datetime.timedelta", (("type", "string"), ("format", "duration"))
    ),
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


_INTEGER = re.compile(r"-?[0-9]+")
_TEXT_LITERAL = re.compile(r"'((?:[^']|'')*)'")
_EMPTY_ARRAY = re.compile(r"'\{\}'(?:::[a-z0-9_ \[\]]+)?")


def python_default(default: str, ref: TypeRef) -> str | None:
    """Python source for an argument's SQL default, or None when it has no plain spelling.

    Covers what argument defaults are in practice: ``null``, booleans, integers, text
    literals and the empty array (``'{}'``, spelled ``()``). Anything else (``now()``,
    ``'15 seconds'::interval`` …) is left to the database by the generated client.
    """
    text = default.strip()
    lowered = text.lower()
    if lowered == "null":
        return "None"
    if ref.array:
        return "()" if _EMPTY_ARRAY.fullmatch(lowered) else None
    if ref.kind != "base":
        return None
    if ref.name == "boolean" and lowered in ("true", "false"):
        return "True" if lowered == "true" else "False"
    if ref.name in ("integer", "bigint", "smallint", "numeric") and _INTEGER.fullmatch(text):
        return str(int(text))
    match = _TEXT_LITERAL.fullmatch(text)
    if ref.name == "text" and match is not None:
        return repr(match.group(1).replace("''", "'"))
    return None
