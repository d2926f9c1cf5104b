"""The event helpers the generator adds to the schema: one pair per payload shape.

For each event of the spec and each of its variants, ``_emit_<event>[_<variant>]``
(broadcasts one event) and ``_event_<event>[_<variant>]`` (returns the event as
``{"event", "topic", "payload"}`` for set-based bodies). Their arguments are the payload
keys, base keys first, with the declared types; bodies call them instead of building
payloads, so a payload cannot drift from its declaration.

Both are single-expression SQL functions without SET clauses, so PostgreSQL inlines them
into their callers: no function call at all on the hot paths (a PL/pgSQL emitter with its
own search_path cost ~0.03 ms per completed task, measured with ``bench.ab``). Without a
search_path of their own they stay safe: their bodies name every object with its schema,
EXECUTE on them is revoked from public, and their callers are engine functions, which all
fix ``search_path = ''``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pgweave_generator import spec_model as sm
from pgweave_generator.diagnostics import Path_
from pgweave_generator.ir import (
    ArgumentIR,
    EventIR,
    EventVariantIR,
    FunctionIR,
    Language,
    Parallel,
    ReturnsIR,
    Security,
    Volatility,
)
from pgweave_generator.render.event_helpers import builder_body, emitter_body, helper_stem
from pgweave_generator.sql_types import TypeRef

Resolve = Callable[[str, Path_], TypeRef]
Report = Callable[[Path_, str], None]

EMIT_PREFIX = "_emit_"
BUILD_PREFIX = "_event_"
_PLACEHOLDER = re.compile(r"\{([^}]*)\}")


def event_ir(name: str, event: sm.EventDef) -> EventIR:
    """The catalogue entry of an event (keys only; their types are the helpers' arguments)."""
    return EventIR(
        name,
        event.doc,
        event.event,
        event.topic,
        ("event_type", *event.payload),
        tuple(EventVariantIR(v, tuple(keys)) for v, keys in event.variants.items()),
    )


def helper_events(spec: sm.Spec) -> dict[str, str]:
    """The event each generated helper broadcasts or builds, by helper name."""
    return {
        prefix + helper_stem(name, variant): name
        for name, event in spec.events.items()
        for variant in (None, *event.variants)
        for prefix in (EMIT_PREFIX, BUILD_PREFIX)
    }


def _helper(
    name: str,
    doc: str,
    args: tuple[ArgumentIR, ...],
    kind: tuple[str, Language, Volatility, Parallel],
    body: str,
    calls: tuple[str, ...],
) -> FunctionIR:
    """An internal, security invoker SQL helper PostgreSQL can inline (no SET clause)."""
    result, language, volatility, parallel = kind
    return FunctionIR(
        name=name,
        doc=doc,
        args=args,
        returns=ReturnsIR(TypeRef(result, "base"), False, None),
        language=language,
        volatility=volatility,
        parallel=parallel,
        security=Security.INVOKER,
        search_path=None,
        strict=False,
        body=body,
        body_file="",
        internal=True,
        raises=(),
        emits=(),
        calls=calls,
    )


def helper_functions(spec: sm.Spec, resolve: Resolve, error: Report) -> dict[str, FunctionIR]:
    """The emitting and building helpers of every event's payload shapes, by name."""
    schema = spec.settings.schema_name
    helpers: dict[str, FunctionIR] = {}
    if spec.events and "_broadcast" not in spec.functions:
        error(
            ("events",),
            "the event helpers call function _broadcast(payload jsonb, event text, topic text),"
            " which the spec does not declare",
        )
    for name, event in spec.events.items():
        path: Path_ = ("events", name)
        for field, template in (("event", event.event), ("topic", event.topic)):
            for key in _PLACEHOLDER.findall(template):
                if key not in event.payload:
                    error((*path, field), f"placeholder '{{{key}}}' is not a payload key")
        for variant_name, added in event.variants.items():
            for key in added:
                if key in event.payload or key == "event_type":
                    error(
                        (*path, "variants", variant_name, key),
                        f"key '{key}' is already in the payload",
                    )
        if "event_type" in event.payload:
            error((*path, "payload", "event_type"), "event_type is implied (the event's name)")
        types = {key: resolve(text, (*path, "payload", key)) for key, text in event.payload.items()}
        shapes: list[tuple[str | None, tuple[str, ...]]] = [(None, tuple(event.payload))]
        for variant_name, added in event.variants.items():
            for key, text in added.items():
                types[key] = resolve(text, (*path, "variants", variant_name, key))
            shapes.append((variant_name, (*event.payload, *added)))
        for variant, keys in shapes:
            stem = helper_stem(name, variant)
            args = tuple(ArgumentIR(key, types[key], None, None) for key in keys)
            what = f"{name}" + (f" ({variant})" if variant else "")
            emit, build = EMIT_PREFIX + stem, BUILD_PREFIX + stem
            helpers[emit] = _helper(
                emit,
                f"Generated from the events catalogue: broadcast {what}.",
                args,
                ("void", Language.SQL, Volatility.VOLATILE, Parallel.UNSAFE),
                emitter_body(schema, name, event.event, event.topic, keys, emit),
                ("_broadcast",),
            )
            helpers[build] = _helper(
                build,
                f"Generated from the events catalogue: {what} as {{event, topic, payload}},"
                " for bodies that broadcast events they collect.",
                args,
                ("jsonb", Language.SQL, Volatility.STABLE, Parallel.SAFE),
                builder_body(name, event.event, event.topic, keys, build),
                (),
            )
    return helpers
