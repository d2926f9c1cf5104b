"""Python client target: sync and async clients, errors, statuses, events and result types.

One method per public function (not marked ``internal`` in the spec) with the spec's
argument names, types and defaults; results are the models of ``models.py``. The package
imports only psycopg, psycopg-pool and pydantic, so it can be vendored as it is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pgweave_generator.ir import ErrorIR, FunctionIR, SchemaIR
from pgweave_generator.render import GeneratedFile, header
from pgweave_generator.render.event_helpers import helper_stem
from pgweave_generator.render.pyformat import format_python
from pgweave_generator.render.python_models import (
    args_model,
    camel,
    public_functions,
    python_name,
    result_json_model,
    result_row_model,
    status_enum,
    type_model,
)
from pgweave_generator.sql_types import BASE_TYPES, TypeRef, python_default
from pgweave_generator.targets import Targets
from pgweave_generator.templating import render

JSON_TYPES = ("jsonb", "json")


# -- names and types -----------------------------------------------------------------------
def error_class(error: ErrorIR) -> str:
    """Exception class of a spec error: ``flow_not_found`` → ``FlowNotFoundError``."""
    name = camel(error.name)
    return name if name.endswith("Error") else f"{name}Error"


def read_type(ref: TypeRef) -> str:
    """Python type of a value of ``ref`` as psycopg loads it (models for spec types)."""
    item = BASE_TYPES[ref.name].python if ref.kind == "base" else type_model(ref)
    return f"list[{item}]" if ref.array else item


def write_type(ref: TypeRef) -> str:
    """Python type the client accepts for an argument of type ``ref``."""
    item = BASE_TYPES[ref.name].write if ref.kind == "base" else type_model(ref)
    return f"Sequence[{item}]" if ref.array else item


def message_pattern(template: str) -> str:
    """A message template's regex: literal text escaped, ``{name}`` → a named lazy group."""
    parts = re.split(r"\{([a-z_][a-z0-9_]*)\}", template)
    pattern = "".join(
        f"(?P<{part}>.*?)" if index % 2 else re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", part)
        for index, part in enumerate(parts)
    )
    return rf"\A{pattern}\Z"


def py_literal(text: str) -> str:
    """Python source of a string, as a raw literal when that reads better (regexes)."""
    if "\\" in text and not text.endswith("\\") and "\n" not in text:
        if '"' not in text:
            return f'r"{text}"'
        if "'" not in text:
            return f"r'{text}'"
    return repr(text)


def py_tuple(texts: tuple[str, ...]) -> str:
    """Python source of a tuple of strings."""
    items = ", ".join(json.dumps(text) for text in texts)
    return f"({items},)" if len(texts) == 1 else f"({items})"


def py_doc(text: str) -> str:
    """Text safe inside a triple-quoted docstring."""
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"').strip()


# -- view models for the templates ---------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One method parameter and the SQL argument it becomes."""

    name: str  # Python name
    sql_name: str
    annotation: str
    default: str | None  # Python source, None when required
    sql_type: str
    value: str  # Python expression passed to the query
    doc: str | None


@dataclass(frozen=True)
class Method:
    """One client method for one SQL function."""

    name: str  # Python name
    function: str  # SQL name
    doc: str
    signature_sql: str
    params: tuple[Param, ...]
    result: str  # annotation
    kind: str  # "rows" | "row" | "json" | "values" | "value" | "void"
    model: str | None  # model validating each row ("rows"/"row") or the JSON value ("json")
    errors: tuple[str, ...]
    error_docs: tuple[tuple[str, str], ...]
    emits: tuple[str, ...]
    variants: tuple[str, ...]  # extra hot-path methods: "execrows", "raw"


def _param(
    schema: SchemaIR, name: str, ref: TypeRef, default: str | None, doc: str | None
) -> Param:
    annotation = write_type(ref)
    spelled = None
    if default is not None:
        spelled = python_default(default, ref) or "DEFAULT"
        if spelled == "None":
            annotation = f"{annotation} | None"
        elif spelled == "DEFAULT":
            annotation = f"{annotation} | SqlDefault"
    python = python_name(name)
    json_arg = ref.kind == "base" and ref.name in JSON_TYPES
    value = python
    if json_arg:
        helper = "jsonb" if ref.name == "jsonb" else "json"
        value = f"{helper}_array({python})" if ref.array else f"{helper}({python})"
    elif ref.array:
        value = f"array({python})"
    text = py_doc(doc) if doc else None
    return Param(python, name, annotation, spelled, ref.sql(schema.schema), value, text)


def _result(function: FunctionIR) -> tuple[str, str, str | None]:
    """(annotation, kind, row model) of a function's result."""
    returns = function.returns
    if returns.table is not None:
        model = result_row_model(function)
        return f"list[{model}]", "rows", model
    if returns.json_object is not None:
        model = result_json_model(function)
        return f"{model} | None", "json", model
    assert returns.type is not None
    ref = returns.type
    if ref.kind != "base" and not ref.array:
        model = type_model(ref)
        return (f"list[{model}]", "rows", model) if returns.setof else (model, "row", model)
    if ref.kind == "base" and ref.name == "void":
        return "None", "void", None
    python = read_type(ref)
    if returns.setof:
        return f"list[{python}]", "values", None
    return (python if python == "JsonValue" else f"{python} | None"), "value", None


def method(schema: SchemaIR, function: FunctionIR, errors: dict[str, ErrorIR]) -> Method:
    """The client method of one public function."""
    params = tuple(_param(schema, a.name, a.type, a.default, a.doc) for a in function.args)
    annotation, kind, model = _result(function)
    signature = ", ".join(
        f"{a.name} {a.type.sql(schema.schema)}"
        + (f" default {a.default}" if a.default is not None else "")
        for a in function.args
    )
    return Method(
        name=python_name(function.name),
        function=function.name,
        doc=py_doc(function.doc),
        signature_sql=f"{schema.schema}.{function.name}({signature})",
        params=params,
        result=annotation,
        kind=kind,
        model=model,
        errors=tuple(error_class(errors[name]) for name in function.raises),
        error_docs=tuple(
            (error_class(errors[name]), py_doc(errors[name].doc)) for name in function.raises
        ),
        emits=function.emits,
        variants=function.client_variants,
    )


# -- files -----------------------------------------------------------------------------------
def class_names(targets: Targets) -> dict[str, str]:
    """The client's class names as template context (``client``, ``async_client``, …)."""
    return {
        "package": targets.python_package,
        "client": targets.client_class,
        "async_client": targets.async_client_class,
        "base_error": targets.base_error_class,
    }


def render_python_client(schema: SchemaIR, targets: Targets, source: str) -> list[GeneratedFile]:
    """Every hand-templated file of the client package (``models.py`` is rendered apart)."""
    errors = {error.name: error for error in schema.errors}
    methods = [method(schema, f, errors) for f in public_functions(schema)]
    names = class_names(targets)
    error_views = [
        {
            "cls": error_class(e),
            "doc": py_doc(e.doc),
            "sqlstate": e.sqlstate,
            "constraint": e.constraint,
            "template": e.message,
            "template_literal": py_literal(e.message or ""),
            "pattern_literal": py_literal(message_pattern(e.message or "")),
            "params": re.findall(r"\{([a-z_][a-z0-9_]*)\}", e.message or ""),
        }
        for e in schema.errors
    ]
    machines = [
        {
            "enum": status_enum(m.name),
            "machine": m,
            "literal": f"{status_enum(m.name)}Literal",
            "prefix": m.name.upper(),
        }
        for m in schema.state_machines
    ]
    events = [
        {
            "event": e,
            "constant": helper_stem(e.name).upper(),
            "doc": py_doc(e.doc),
            "payload": py_tuple(e.payload),
            "variants": [{"name": v.name, "added": py_tuple(v.keys)} for v in e.variants],
        }
        for e in schema.events
    ]
    results = [
        {
            "alias": f"{camel(f.name)}Result",
            "annotation": m.result,
            "args": args_model(f),
            "function": f.name,
        }
        for f, m in zip(public_functions(schema), methods, strict=True)
    ]
    context: dict[str, object] = {
        "s": schema,
        "methods": methods,
        "errors": error_views,
        "machines": machines,
        "events": events,
        "results": results,
        "result_models": sorted({m.model for m in methods if m.model is not None}),
        "array_helpers_import": "".join(
            f", {helper}"
            for helper in sorted(
                {
                    p.value.split("(")[0]
                    for m in methods
                    for p in m.params
                    if p.value.startswith(("jsonb_array(", "json_array("))
                }
            )
        ),
        "args_models": [args_model(f) for f in public_functions(schema)],
        **names,
    }
    package = targets.package_dir

    def python(path: str, template: str, **extra: object) -> GeneratedFile:
        code = render(template, header=header("#", source), **context, **extra)
        return GeneratedFile(f"{package}/{path}", format_python(code, path))

    files = [
        python("__init__.py", "python/__init__.py.j2"),
        python("_base.py", "python/_base.py.j2"),
        python("errors.py", "python/errors.py.j2"),
        python("statuses.py", "python/statuses.py.j2"),
        python("events.py", "python/events.py.j2"),
        python("results.py", "python/results.py.j2"),
        python("client.py", "python/client.py.j2", is_async=False),
        python("aio.py", "python/client.py.j2", is_async=True),
        GeneratedFile(
            f"{package}/README.md",
            render("python/README.md.j2", header=header("<!--", source) + " -->", **context),
        ),
        GeneratedFile(f"{package}/py.typed", header("#", source) + "\n"),
    ]
    return files
