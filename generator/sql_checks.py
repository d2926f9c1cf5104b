"""Checks of the spec's SQL against the spec: names in fragments, statuses set by bodies.

Every SQL fragment (check expressions, index predicates, defaults, bodies) is parsed with
PostgreSQL's parser (``pgweave_generator.sql_analysis``); names it can resolve are checked - the
columns of the table in checks and index predicates, the tables and functions of the
schema (and pgmq's functions) that bodies name; a body may not build an event payload
itself (the generated event helpers do). A body that writes a status literal to a
column governed by a state machine must be listed in ``by`` of a transition to that
state, and each function listed in ``by`` must perform it (itself or through a function
it calls). Likewise for events: a body calling an event's generated helper must list the
event in ``emits``, and each listed event must be emitted by the body or a function it
calls. Problems are reported through the callbacks the builder passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

from pgweave_generator import spec_model as sm
from pgweave_generator.diagnostics import Path_
from pgweave_generator.sql_analysis import (
    BodyFacts,
    SqlSyntaxError,
    called_functions,
    column_refs,
    parse_expression,
    pgmq_functions,
)

Report = Callable[[Path_, str], None]
BodyReport = Callable[[str, int, str], None]  # function name, body line, message


def check_expression(
    text: str,
    path: Path_,
    error: Report,
    *,
    schema: str,
    functions: Mapping[str, object],
    table: tuple[str, Sequence[str]] | None = None,
) -> None:
    """Parse an SQL expression; with ``table`` (name, columns) its column names must exist
    there, without it (a default) it may name no column at all."""
    try:
        tree = parse_expression(text)
    except SqlSyntaxError as exc:
        error(path, f"invalid SQL expression: {exc}")
        return
    for name in dict.fromkeys(column_refs(tree)):
        if table is None:
            error(path, f"a default cannot refer to column '{name}'")
        elif name not in table[1]:
            error(path, f"unknown column '{name}' in table '{table[0]}'")
    for qualifier, name in called_functions(tree):
        if qualifier == schema and name not in functions:
            error(path, f"unknown function '{schema}.{name}'")


def check_body_names(
    function: str,
    facts: BodyFacts,
    spec: sm.Spec,
    report: BodyReport,
    queue: str | None,
    helpers: Collection[str] = (),
) -> None:
    """Syntax errors, tables and functions of the schema or the queue that do not exist
    (``helpers``: the generated ones), queue functions called by a spec that declares no
    queue, and event payloads built by hand."""
    schema = spec.settings.schema_name
    for line, message in facts.errors:
        report(function, line, f"invalid SQL: {message}")
    for line in facts.event_payloads:
        report(
            function,
            line,
            "builds an event payload by hand (jsonb_build_object('event_type', …)); call the "
            f"event's generated helper ({schema}._emit_<event> or {schema}._event_<event>)",
        )
    for call in facts.calls:
        if call.schema == schema and call.name not in spec.functions and call.name not in helpers:
            report(function, call.line, f"unknown function '{schema}.{call.name}'")
        elif call.schema == queue and call.name not in pgmq_functions():
            report(function, call.line, f"unknown function '{queue}.{call.name}'")
        elif queue is None and call.schema == "pgmq":
            report(
                function,
                call.line,
                f"calls 'pgmq.{call.name}' but settings.queue is not set (add queue: {{provider: pgmq}})",
            )
    for relation in facts.relations:
        if relation.schema == schema and relation.name not in spec.tables:
            report(function, relation.line, f"unknown table '{schema}.{relation.name}'")


def _callees(spec: sm.Spec, facts: Mapping[str, BodyFacts], start: str) -> set[str]:
    """``start`` and every function of the schema it calls, transitively."""
    schema = spec.settings.schema_name
    seen = {start}
    pending = [start]
    while pending:
        current = facts.get(pending.pop())
        for call in current.calls if current is not None else ():
            if call.schema == schema and call.name in spec.functions and call.name not in seen:
                seen.add(call.name)
                pending.append(call.name)
    return seen


def check_transitions(
    spec: sm.Spec, facts: Mapping[str, BodyFacts], error: Report, report: BodyReport
) -> None:
    """Status writes need a declared transition; declared transitions need a body doing them."""
    schema = spec.settings.schema_name
    governed = {(m.table, m.column): (name, m) for name, m in spec.state_machines.items()}
    for function, found in facts.items():
        for write in found.status_writes:
            entry = governed.get((write.table, write.column))
            if write.schema != schema or entry is None:
                continue
            name, machine = entry
            if write.literal not in machine.states:
                report(
                    function,
                    write.line,
                    f"'{write.literal}' is not a state of state machine '{name}'",
                )
            elif not any(t.to == write.literal and function in t.by for t in machine.transitions):
                report(
                    function,
                    write.line,
                    f"sets {write.table}.{write.column} to '{write.literal}' but no transition "
                    f"of state machine '{name}' to '{write.literal}' lists {function} in 'by'",
                )
        for insert in found.inserts:
            entry = next((e for (t, _), e in governed.items() if t == insert.name), None)
            if insert.schema != schema or entry is None:
                continue
            name, machine = entry
            if not any(not t.from_ and function in t.by for t in machine.transitions):
                report(
                    function,
                    insert.line,
                    f"inserts into {insert.name} but no creating transition (from: []) of "
                    f"state machine '{name}' lists {function} in 'by'",
                )
    for name, machine in spec.state_machines.items():
        for index, transition in enumerate(machine.transitions):
            for position, function in enumerate(transition.by):
                if function not in facts:
                    continue  # unknown function or unreadable body: reported elsewhere
                done = False
                for callee in _callees(spec, facts, function):
                    callee_facts = facts.get(callee, BodyFacts())
                    done = done or any(
                        (w.schema, w.table, w.column, w.literal)
                        == (schema, machine.table, machine.column, transition.to)
                        for w in callee_facts.status_writes
                    )
                    done = done or (
                        not transition.from_
                        and any(
                            (i.schema, i.name) == (schema, machine.table)
                            for i in callee_facts.inserts
                        )
                    )
                if not done:
                    what = (
                        f"inserts into {machine.table}"
                        if not transition.from_
                        else f"sets {machine.table}.{machine.column} to '{transition.to}'"
                    )
                    error(
                        ("state_machines", name, "transitions", index, "by", position),
                        f"no body of {function} (or of a function it calls) {what}",
                    )


def check_emits(
    spec: sm.Spec,
    facts: Mapping[str, BodyFacts],
    helper_events: Mapping[str, str],
    error: Report,
    report: BodyReport,
) -> None:
    """A body calling ``_emit_<event>``/``_event_<event>`` lists the event in ``emits``; an
    event listed in ``emits`` is emitted by the body or by a function it calls.

    ``emits`` says what a call may broadcast, so it is not required to hold everything
    the callees emit: ``pause_run`` calls ``_set_run_paused``, which emits ``run:paused``
    or ``run:unpaused`` as its argument says.
    """
    schema = spec.settings.schema_name
    emitted: dict[str, set[str]] = {}  # events each body emits itself
    for function, found in facts.items():
        declared = spec.functions[function].emits
        emitted[function] = set()
        for call in found.calls:
            event = helper_events.get(call.name) if call.schema == schema else None
            if event is None:
                continue
            emitted[function].add(event)
            if event not in declared:
                report(
                    function,
                    call.line,
                    f"calls {schema}.{call.name} but '{event}' is not in the 'emits' of {function}",
                )
    for function in facts:
        reached = set().union(*(emitted.get(f, set()) for f in _callees(spec, facts, function)))
        for index, event in enumerate(spec.functions[function].emits):
            if event in spec.events and event not in reached:
                error(
                    ("functions", function, "emits", index),
                    f"no body of {function} (or of a function it calls) emits '{event}'",
                )
