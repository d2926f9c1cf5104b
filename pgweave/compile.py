"""Compile a :class:`~pgweave.dsl.Flow` to SQL (``create_flow``/``add_step``) and to its shape.

The shape is exactly the JSON ``pgflow._get_flow_shape`` returns for the stored flow, so a
worker can hand it to ``pgflow.ensure_flow_compiled``; with ``with_options=True`` it also
carries the flow and step options that ``_create_flow_from_shape`` uses when it creates the
flow (options are never compared).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

from pgweave.dsl import Flow, FlowOptions, StepDefinition, StepOptions


class PatternShape(TypedDict):
    """A condition pattern in a shape: ``{"defined": false}`` or ``{"defined": true, "value": …}``."""

    defined: bool
    value: NotRequired[dict[str, Any]]


class StepShape(TypedDict):
    """One step of a flow shape."""

    slug: str
    stepType: str
    dependencies: list[str]
    whenUnmet: str
    whenExhausted: str
    requiredInputPattern: PatternShape
    forbiddenInputPattern: PatternShape
    options: NotRequired[dict[str, int]]


class FlowShape(TypedDict):
    """A flow's structure as ``pgflow._get_flow_shape`` returns it."""

    steps: list[StepShape]
    options: NotRequired[dict[str, int]]


_OPTION_KEYS = {
    "max_attempts": "maxAttempts",
    "base_delay": "baseDelay",
    "timeout": "timeout",
    "start_delay": "startDelay",
}


def _pattern(value: Mapping[str, Any] | None) -> PatternShape:
    if value is None:
        return {"defined": False}
    return {"defined": True, "value": dict(value)}


def _options(options: FlowOptions | StepOptions) -> dict[str, int]:
    return {
        key: value
        for name, key in _OPTION_KEYS.items()
        if (value := getattr(options, name, None)) is not None
    }


def step_shape(step: StepDefinition, *, with_options: bool = False) -> StepShape:
    """The shape of one step (dependencies sorted, as the database reports them)."""
    shape: StepShape = {
        "slug": step.slug,
        "stepType": step.step_type,
        "dependencies": sorted(step.dependencies),
        "whenUnmet": step.effective_when_unmet,
        "whenExhausted": step.effective_when_exhausted,
        "requiredInputPattern": _pattern(step.required_input_pattern),
        "forbiddenInputPattern": _pattern(step.forbidden_input_pattern),
    }
    if with_options and (options := _options(step.options)):
        shape["options"] = options
    return shape


def flow_shape(flow: Flow[Any], *, with_options: bool = False) -> FlowShape:
    """The flow's shape; with options (only those set) when ``with_options`` is true."""
    shape: FlowShape = {"steps": [step_shape(s, with_options=with_options) for s in flow.steps]}
    if with_options and (options := _options(flow.options)):
        shape["options"] = options
    return shape


def sql_literal(text: str) -> str:
    """A standard-conforming SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _json_literal(value: Mapping[str, Any]) -> str:
    return sql_literal(json.dumps(value, separators=(", ", ": "), ensure_ascii=False)) + "::jsonb"


def _option_args(options: FlowOptions | StepOptions) -> list[str]:
    return [
        f"{name} => {value}"
        for name in _OPTION_KEYS
        if (value := getattr(options, name, None)) is not None
    ]


def compile_statements(flow: Flow[Any]) -> list[str]:
    """``select pgflow.create_flow(...)`` then one ``add_step`` per step, in definition order.

    Only options that were set are passed (named), so the SQL defaults apply otherwise;
    the statements are idempotent like the functions they call.
    """
    args = [sql_literal(flow.slug), *_option_args(flow.options)]
    statements = [f"select pgflow.create_flow({', '.join(args)});"]
    for step in flow.steps:
        args = [sql_literal(flow.slug), sql_literal(step.slug)]
        if step.dependencies:
            deps = ", ".join(sql_literal(d) for d in step.dependencies)
            args.append(f"deps_slugs => array[{deps}]::text[]")
        args.extend(_option_args(step.options))
        if step.step_type == "map":
            args.append("step_type => 'map'")
        if step.required_input_pattern is not None:
            args.append(f"required_input_pattern => {_json_literal(step.required_input_pattern)}")
        if step.forbidden_input_pattern is not None:
            args.append(f"forbidden_input_pattern => {_json_literal(step.forbidden_input_pattern)}")
        if step.when_unmet is not None:
            args.append(f"when_unmet => {sql_literal(step.when_unmet)}")
        if step.when_exhausted is not None:
            args.append(f"when_exhausted => {sql_literal(step.when_exhausted)}")
        statements.append(f"select pgflow.add_step({', '.join(args)});")
    return statements


def compile_migration(flow: Flow[Any], *, source: str | None = None) -> str:
    """A migration file's text: a header comment and the flow's statements."""
    origin = f" from {source}" if source else ""
    lines = [
        f"-- Flow {flow.slug!r}, compiled by pgweave{origin}.",
        "-- create_flow and add_step are idempotent: an existing flow is left unchanged.",
        *compile_statements(flow),
        "",
    ]
    return "\n".join(lines)


def migration_filename(flow: Flow[Any], now: datetime | None = None) -> str:
    """``<UTC timestamp>_create_<slug>_flow.sql``, sortable like other migration tools' files."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    return f"{stamp}_create_{flow.slug}_flow.sql"
