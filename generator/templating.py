"""The Jinja environment every renderer uses: strict, deterministic, with SQL helpers."""

from __future__ import annotations

from functools import cache

import jinja2


def sql_literal(value: str | None) -> str:
    """Quote text as a SQL string literal ('' doubles quotes); None becomes null."""
    if value is None:
        return "null"
    return "'" + value.replace("'", "''") + "'"


@cache
def environment() -> jinja2.Environment:
    """The shared environment: StrictUndefined, no autoescape, stable whitespace."""
    env = jinja2.Environment(
        # templates/ of the repository, installed as the data package pgweave_templates
        loader=jinja2.PackageLoader("pgweave_templates", "."),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["sql_literal"] = sql_literal
    return env


def render(template: str, **context: object) -> str:
    """Render one template with the given context."""
    return environment().get_template(template).render(**context)
