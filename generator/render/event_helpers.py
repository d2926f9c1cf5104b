"""SQL bodies of the generated event helpers (one emitter and one builder per payload shape).

The payload is ``jsonb_build_object('event_type', <event>, <key>, <argument>, …)``; the
broadcast name and the topic are the event's templates with each ``{key}`` replaced by
the argument of that name.
"""

from __future__ import annotations

import re

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def helper_stem(event: str, variant: str | None = None) -> str:
    """The helpers' name after ``_emit_``/``_event_``: ``run:failed`` + ``with_error`` →
    ``run_failed_with_error``."""
    stem = event.replace(":", "_")
    return f"{stem}_{variant}" if variant else stem


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def template_sql(template: str, function: str) -> str:
    """An event name or topic template as an SQL text expression over ``function``'s
    arguments (``step:{step_slug}:started`` → ``'step:' || f.step_slug || ':started'``)."""
    parts: list[str] = []
    last = 0
    for match in _PLACEHOLDER.finditer(template):
        if match.start() > last:
            parts.append(_quote(template[last : match.start()]))
        parts.append(f"{function}.{match.group(1)}")
        last = match.end()
    if last < len(template):
        parts.append(_quote(template[last:]))
    return " || ".join(parts) if parts else "''"


def payload_sql(event_type: str, keys: tuple[str, ...], function: str, indent: str) -> str:
    """``jsonb_build_object('event_type', …, key, function.key, …)`` over several lines."""
    pairs = [f"'event_type', {_quote(event_type)}"]
    pairs += [f"{_quote(key)}, {function}.{key}" for key in keys]
    inner = f",\n{indent}  ".join(pairs)
    return f"jsonb_build_object(\n{indent}  {inner}\n{indent})"


def emitter_body(
    schema: str, event_type: str, event: str, topic: str, keys: tuple[str, ...], function: str
) -> str:
    """A single-expression SQL body broadcasting the payload through ``<schema>._broadcast``."""
    return (
        f"select {schema}._broadcast(\n"
        f"  {payload_sql(event_type, keys, function, '  ')},\n"
        f"  {template_sql(event, function)},\n"
        f"  {template_sql(topic, function)}\n"
        ")"
    )


def builder_body(
    event_type: str, event: str, topic: str, keys: tuple[str, ...], function: str
) -> str:
    """An SQL body returning ``{"event": …, "topic": …, "payload": …}`` (for set-based
    bodies that collect events and broadcast them in order)."""
    return (
        "select jsonb_build_object(\n"
        f"  'event', {template_sql(event, function)},\n"
        f"  'topic', {template_sql(topic, function)},\n"
        f"  'payload', {payload_sql(event_type, keys, function, '  ')}\n"
        ")"
    )
