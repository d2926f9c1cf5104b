"""Python type stubs: a JSON Schema derived from the model, turned into pydantic v2 models.

Per table a ``Row`` (what a select returns), ``Insert`` (optional where nullable or
defaulted) and ``Update`` (everything optional) model, per composite type one model, per
state machine a ``StrEnum`` of its states, and per public function an ``Args`` model
(plus a ``Row`` model for functions returning a table). The JSON Schema is written next to
the models so that other tools can use it; datamodel-code-generator turns it into
``models.py`` in-process.
"""

from __future__ import annotations

import ast
import json
import keyword
from typing import TYPE_CHECKING, Any

from pgweave_generator.ir import ColumnIR, FunctionIR, SchemaIR, TableIR
from pgweave_generator.render import GeneratedFile, header
from pgweave_generator.render.pyformat import format_python
from pgweave_generator.sql_types import BASE_TYPES, TypeRef, python_default

if TYPE_CHECKING:
    from pgweave_generator.targets import Targets

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


# -- names shared by every Python target ------------------------------------------------
def camel(name: str) -> str:
    """``step_states`` → ``StepStates`` (leading underscores dropped)."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def python_name(name: str) -> str:
    """A SQL identifier as a Python parameter name (keywords get a trailing underscore)."""
    return f"{name}_" if keyword.iskeyword(name) or keyword.issoftkeyword(name) else name


def row_model(table: str) -> str:
    """Model of a table's rows."""
    return f"{camel(table)}Row"


def status_enum(machine: str) -> str:
    """Enum of a state machine's states."""
    return f"{camel(machine)}Status"


def args_model(function: FunctionIR) -> str:
    """Model of a function's arguments."""
    return f"{camel(function.name)}Args"


def result_row_model(function: FunctionIR) -> str:
    """Model of one row of a function that returns a table."""
    return f"{camel(function.name)}Row"


def result_json_model(function: FunctionIR) -> str:
    """Model of the JSON object a function returns (``returns.json_object`` in the spec)."""
    return f"{camel(function.name)}Json"


def type_model(ref: TypeRef) -> str:
    """Model of a spec-defined (table row or composite) type."""
    return row_model(ref.name) if ref.kind == "table" else camel(ref.name)


def public_functions(schema: SchemaIR) -> list[FunctionIR]:
    """Functions the client exposes (not marked internal), sorted by name."""
    return sorted((f for f in schema.all_functions if not f.internal), key=lambda f: f.name)


# -- JSON Schema ------------------------------------------------------------------------
def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}"}


def type_schema(ref: TypeRef) -> dict[str, Any]:
    """JSON Schema of a value of a spec type (from the type table), without nullability."""
    if ref.kind == "base":
        base = BASE_TYPES[ref.name]
        item: dict[str, Any] = dict(base.json_schema)
        if base.model_type is not None:
            item["customTypePath"] = base.model_type
    else:
        item = _ref(type_model(ref))
    return {"type": "array", "items": item} if ref.array else item


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _described(schema: dict[str, Any], doc: str | None) -> dict[str, Any]:
    return {**schema, "description": doc} if doc else schema


def _column_schema(
    schema: SchemaIR, column: ColumnIR, *, nullable: bool | None = None
) -> dict[str, Any]:
    if column.state_machine is not None:
        value = _ref(status_enum(column.state_machine))
    else:
        value = type_schema(column.type)
    if column.nullable if nullable is None else nullable:
        value = _nullable(value)
    return _described(value, column.doc)


def _object(
    description: str,
    properties: dict[str, dict[str, Any]],
    required: list[str],
    *,
    closed: bool,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": required,
    }
    if closed:
        document["additionalProperties"] = False
    return document


def _table_defs(schema: SchemaIR, table: TableIR) -> dict[str, dict[str, Any]]:
    name = camel(table.name)
    qualified = f"{schema.schema}.{table.name}"
    columns = {c.name: _column_schema(schema, c) for c in table.columns}
    insert_required = [c.name for c in table.columns if not c.nullable and not c.has_default]
    return {
        f"{name}Row": _object(
            f"A row of {qualified}: {table.doc}", columns, [c.name for c in table.columns],
            closed=False,
        ),
        f"{name}Insert": _object(
            f"Values for inserting into {qualified}; optional where nullable or defaulted.",
            columns,
            insert_required,
            closed=True,
        ),
        f"{name}Update": _object(
            f"Values for updating {qualified}; every column optional.", columns, [], closed=True
        ),
    }  # fmt: skip


def json_default(default: str | None, ref: TypeRef) -> tuple[bool, Any]:
    """(True, value) when an argument's SQL default has a Python/JSON spelling."""
    if default is None:
        return False, None
    spelled = python_default(default, ref)
    if spelled is None:
        return False, None
    value = ast.literal_eval(spelled)
    return True, list(value) if isinstance(value, tuple) else value


def _function_defs(schema: SchemaIR, function: FunctionIR) -> dict[str, dict[str, Any]]:
    properties: dict[str, dict[str, Any]] = {}
    required: list[str] = []
    for arg in function.args:
        value = type_schema(arg.type)
        known, default = json_default(arg.default, arg.type)
        if arg.default is None:
            required.append(arg.name)
        elif known and default is None:
            value = _nullable(value)
        if known and default is not None:
            value = {**value, "default": default}
        properties[arg.name] = _described(value, arg.doc)
    defs = {
        args_model(function): _object(
            f"Arguments of {schema.schema}.{function.name}: {function.doc}",
            properties,
            required,
            closed=True,
        )
    }
    if function.returns.table is not None:
        defs[result_row_model(function)] = _object(
            f"A row returned by {schema.schema}.{function.name}.",
            {a.name: _nullable(type_schema(a.type)) for a in function.returns.table},
            [a.name for a in function.returns.table],
            closed=False,
        )
    if function.returns.json_object is not None:
        defs[result_json_model(function)] = _object(
            f"The JSON object {schema.schema}.{function.name} returns.",
            {a.name: type_schema(a.type) for a in function.returns.json_object},
            [a.name for a in function.returns.json_object],
            closed=False,
        )
    return defs


def json_schema(schema: SchemaIR) -> dict[str, Any]:
    """The JSON Schema of every row, insert, update, composite, status and argument shape."""
    defs: dict[str, dict[str, Any]] = {}
    for machine in schema.state_machines:
        defs[status_enum(machine.name)] = {
            "type": "string",
            "enum": [state.name for state in machine.states],
            "description": f"States of {machine.table}.{machine.column}: {machine.doc}",
        }
    for table in schema.tables:
        defs.update(_table_defs(schema, table))
    for composite in schema.types:
        defs[camel(composite.name)] = _object(
            f"Composite type {schema.schema}.{composite.name}: {composite.doc}",
            {a.name: _nullable(type_schema(a.type)) for a in composite.attributes},
            [a.name for a in composite.attributes],
            closed=False,
        )
    for function in public_functions(schema):
        defs.update(_function_defs(schema, function))
    return {"$defs": dict(sorted(defs.items()))}


def render_json_schema(schema: SchemaIR, targets: Targets, source: str) -> GeneratedFile:
    """The JSON Schema the models are generated from, with the do-not-edit note."""
    document = {
        "$comment": f"Code generated by pgweave from {source}. DO NOT EDIT.",
        "$schema": JSON_SCHEMA_DIALECT,
        "title": f"{schema.schema} models",
        "description": (
            f"Row/Insert/Update shapes of the tables of schema {schema.schema}, its composite "
            "types, state machine statuses and the arguments of its public functions."
        ),
        **json_schema(schema),
    }
    return GeneratedFile(
        f"{targets.package_dir}/schema.json",
        json.dumps(document, indent=2, ensure_ascii=False) + "\n",
    )


# -- models.py --------------------------------------------------------------------------
def render_models(schema: SchemaIR, targets: Targets, source: str) -> GeneratedFile:
    """``models.py``: datamodel-code-generator's pydantic v2 output for the JSON Schema."""
    from datamodel_code_generator import generate
    from datamodel_code_generator.enums import DataModelType, InputFileType
    from datamodel_code_generator.format import PythonVersion

    top = (
        f"{header('#', source)}\n"
        f'"""Pydantic models of schema {schema.schema}: table rows (Row/Insert/Update), composite '
        "types, statuses and function arguments.\n\nGenerated from schema.json by "
        'datamodel-code-generator.\n"""'
    )
    code = generate(
        json_schema(schema),
        input_file_type=InputFileType.JsonSchema,
        output_model_type=DataModelType.PydanticV2BaseModel,
        target_python_version=PythonVersion.PY_311,
        use_standard_collections=True,
        use_union_operator=True,
        use_schema_description=True,
        use_field_description=True,
        capitalise_enum_members=True,
        skip_root_model=True,
        keep_model_order=True,
        disable_timestamp=True,
        use_double_quotes=True,
        strict_nullable=True,
        formatters=[],
        custom_file_header=top,
    )
    if not isinstance(code, str):  # pragma: no cover - one input gives one module
        raise TypeError("datamodel-code-generator returned several modules")
    return GeneratedFile(f"{targets.package_dir}/models.py", format_python(code, "models.py"))
