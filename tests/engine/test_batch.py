"""The batch protocol: complete_tasks and read_and_start_tasks behave exactly like the
per-task calls they replace.

Each scenario runs twice from the same start, in two databases cloned from one template
(so run ids, message ids and everything else coincide): once with the pgflow-compatible
calls (complete_task per entry, or read_with_poll then start_tasks) in one transaction,
once with the batch function. The returned rows, every engine table, the queue and its
archive, and the events (through the realtime stub, in emission order) must be equal up
to timestamps (compared as set or not set).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from tests.conftest import Server
from tests.engine.helpers import (
    Row,
    add_step,
    create_flow,
    ensure_worker,
    fetch,
    install_realtime_stub,
    make_visible,
    read_and_start,
    scalar,
)

Entry = tuple[uuid.UUID | None, str | None, int | None, Any]
Setup = Callable[[psycopg.Connection], None]

RUN_A = uuid.UUID("aaaaaaaa-0000-0000-0000-000000000001")
RUN_B = uuid.UUID("bbbbbbbb-0000-0000-0000-000000000002")
RUN_C = uuid.UUID("cccccccc-0000-0000-0000-000000000003")
NULL = object()
"""An SQL NULL output (as opposed to JSON null)."""


@pytest.fixture
def pair(
    pg_server: Server, template_db: str
) -> Iterator[tuple[psycopg.Connection, psycopg.Connection]]:
    """Two autocommit connections to two identical fresh engine databases."""
    names = [pg_server.create_database(template=template_db) for _ in range(2)]
    conns = [psycopg.connect(pg_server.dsn(name), autocommit=True) for name in names]
    try:
        for conn in conns:
            install_realtime_stub(conn)
        yield conns[0], conns[1]
    finally:
        for conn in conns:
            conn.close()
        for name in names:
            pg_server.drop_database(name)


def _norm(value: Any, key: str = "") -> Any:
    """Timestamps become 'set' (or None); everything else is compared as is."""
    if isinstance(value, datetime):
        return "set"
    if isinstance(value, dict):
        return {k: _norm(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    if isinstance(value, str) and key.endswith("_at"):
        return "set"
    return value


def snapshot(conn: psycopg.Connection) -> dict[str, Any]:
    """Every engine table, every queue and archive, and the events recorded so far."""
    state: dict[str, Any] = {
        "runs": fetch(conn, "select * from pgflow.runs order by run_id"),
        "step_states": fetch(conn, "select * from pgflow.step_states order by run_id, step_slug"),
        "step_tasks": fetch(
            conn, "select * from pgflow.step_tasks order by run_id, step_slug, task_index"
        ),
        "events": fetch(
            conn, "select event, topic, payload, private from realtime.messages order by seq"
        ),
    }
    for (queue,) in conn.execute("select queue_name from pgmq.list_queues() order by 1").fetchall():
        state[f"q_{queue}"] = fetch(
            conn,
            f"select msg_id, read_ct, message, vt > clock_timestamp() + interval '3 seconds' as hidden"
            f" from pgmq.q_{queue} order by msg_id",
        )
        state[f"a_{queue}"] = fetch(
            conn, f"select msg_id, read_ct, message from pgmq.a_{queue} order by msg_id"
        )
    normalized: dict[str, Any] = _norm(state)
    return normalized


def _json(output: Any) -> Jsonb | None:
    return None if output is NULL else Jsonb(output)


def per_task(conn: psycopg.Connection, entries: list[Entry]) -> list[Row]:
    """complete_task for each entry, in order, in one transaction."""
    rows: list[Row] = []
    with conn.transaction():
        for run_id, step, index, output in entries:
            rows += fetch(
                conn,
                "select * from pgflow.complete_task(%s, %s, %s, %s)",
                run_id,
                step,
                index,
                _json(output),
            )
    return rows


def batched(conn: psycopg.Connection, entries: list[Entry]) -> tuple[list[Row], int]:
    """One complete_tasks call with the entries; also how many set-based groups of final
    completions (_complete_final_tasks calls) it made."""
    with conn.transaction():
        conn.execute("set local track_functions = 'pl'")
        rows = fetch(
            conn,
            "select * from pgflow.complete_tasks(%s::uuid[], %s::text[], %s::integer[], %s::jsonb[])",
            [e[0] for e in entries],
            [e[1] for e in entries],
            [e[2] for e in entries],
            [_json(e[3]) for e in entries],
        )
        groups = scalar(
            conn,
            "select coalesce(sum(calls), 0) from pg_stat_xact_user_functions"
            " where schemaname = 'pgflow' and funcname = '_complete_final_tasks'",
        )
    return rows, int(groups)


def assert_same_completion(
    pair: tuple[psycopg.Connection, psycopg.Connection],
    setup: Setup,
    entries: Callable[[psycopg.Connection], list[Entry]],
    groups: int | None = None,
) -> list[Row]:
    """Run ``setup`` in both databases, then the entries per task in one and batched in
    the other; everything must be equal (and, when given, the batch must have made
    ``groups`` set-based groups of final completions). Returns the batch's rows."""
    single, batch = pair
    for conn in pair:
        setup(conn)
    todo = entries(single)
    assert todo == entries(batch)
    expected_rows = per_task(single, todo)
    rows, made = batched(batch, todo)
    assert _norm(rows) == _norm(expected_rows)
    assert snapshot(batch) == snapshot(single)
    if groups is not None:
        assert made == groups
    return rows


# -- scenarios ------------------------------------------------------------------------------


def _start(conn: psycopg.Connection, flow: str, run_id: uuid.UUID, flow_input: Any) -> None:
    conn.execute("select pgflow.start_flow(%s, %s, %s)", (flow, Jsonb(flow_input), run_id))


def _read_all(conn: psycopg.Connection, flow: str, qty: int = 100) -> list[Row]:
    return read_and_start(conn, flow, vt=30, qty=qty)


def _entries(tasks: list[Row], output: Callable[[Row], Any]) -> list[Entry]:
    return [(t["run_id"], t["step_slug"], t["task_index"], output(t)) for t in tasks]


def single_flow(conn: psycopg.Connection) -> None:
    create_flow(conn, "one")
    add_step(conn, "one", "only")
    for run_id, n in ((RUN_A, 1), (RUN_B, 2), (RUN_C, 3)):
        _start(conn, "one", run_id, {"n": n})


def test_single_steps_of_several_runs(pair: tuple[psycopg.Connection, psycopg.Connection]) -> None:
    rows = assert_same_completion(
        pair, single_flow, lambda c: _entries(_read_all(c, "one"), lambda t: {"n": 2}), groups=1
    )
    assert [r["status"] for r in rows] == ["completed"] * 3


def test_repeated_and_late_entries(pair: tuple[psycopg.Connection, psycopg.Connection]) -> None:
    def entries(conn: psycopg.Connection) -> list[Entry]:
        tasks = _read_all(conn, "one", qty=2)
        first = _entries(tasks[:1], lambda t: "first")
        return [*first, *first, *_entries(tasks, lambda t: "again"), (RUN_C, "only", 0, "queued")]

    assert_same_completion(pair, single_flow, entries)


def test_chain_completes_steps_and_runs(
    pair: tuple[psycopg.Connection, psycopg.Connection],
) -> None:
    def setup(conn: psycopg.Connection) -> None:
        create_flow(conn, "chain")
        add_step(conn, "chain", "a")
        add_step(conn, "chain", "b", ["a"])
        add_step(conn, "chain", "c", ["a", "b"], required_input_pattern={"a": 1})
        _start(conn, "chain", RUN_A, {"x": 1})
        _start(conn, "chain", RUN_B, {"x": 2})
        for task in _read_all(conn, "chain"):
            conn.execute(
                "select pgflow.complete_task(%s, %s, %s, %s)",
                (task["run_id"], "a", 0, Jsonb(1 if task["run_id"] == RUN_A else 2)),
            )

    # b completes in both runs: c runs in A (a = 1) and is skipped in B
    assert_same_completion(pair, setup, lambda c: _entries(_read_all(c, "chain"), lambda t: "b"))


def map_flow(size: int, run_id: uuid.UUID = RUN_A) -> Setup:
    def setup(conn: psycopg.Connection) -> None:
        create_flow(conn, "maps")
        add_step(conn, "maps", "m1", step_type="map")
        add_step(conn, "maps", "m2", ["m1"], step_type="map")
        add_step(conn, "maps", "last", ["m2"])
        _start(conn, "maps", run_id, list(range(size)))

    return setup


def test_a_whole_map_then_its_dependent_map(
    pair: tuple[psycopg.Connection, psycopg.Connection],
) -> None:
    def entries(conn: psycopg.Connection) -> list[Entry]:
        tasks = _read_all(conn, "maps")
        return _entries(list(reversed(tasks)), lambda t: t["input"] * 10)

    rows = assert_same_completion(pair, map_flow(7), entries)
    assert len(rows) == 7
    single, _ = pair
    # and the dependent map, whose tasks came from that batch, batched as well
    assert_same_completion(
        pair, lambda c: None, lambda c: _entries(_read_all(c, "maps"), lambda t: [t["input"]])
    )
    assert fetch(single, "select status from pgflow.step_states where step_slug = 'm2'") == [
        {"status": "completed"}
    ]


def test_part_of_a_map_with_duplicates_queued_tasks_and_nulls(
    pair: tuple[psycopg.Connection, psycopg.Connection],
) -> None:
    def entries(conn: psycopg.Connection) -> list[Entry]:
        tasks = _read_all(conn, "maps", qty=4)  # tasks 0..3 started, 4..5 queued
        return [
            (RUN_A, "m1", 2, "two"),
            (RUN_A, "m1", 2, "two again"),
            (RUN_A, "m1", 5, "queued"),
            (RUN_A, "m1", 0, NULL),
            (RUN_A, "m1", None, "no index"),
            (RUN_A, "m1", 99, "no such task"),
            (RUN_A, "m1", 1, None),
            *_entries(tasks[3:], lambda t: False),
        ]

    rows = assert_same_completion(pair, map_flow(6), entries)
    assert [r["task_index"] for r in rows] == [2, 2, 5, 0, 1, 3]


def test_the_finishing_entry_in_the_middle_of_a_batch(
    pair: tuple[psycopg.Connection, psycopg.Connection],
) -> None:
    def entries(conn: psycopg.Connection) -> list[Entry]:
        tasks = _entries(_read_all(conn, "maps"), lambda t: t["input"])
        return [*tasks[:2], *tasks, *tasks[:1]]

    assert_same_completion(pair, map_flow(4), entries)


def test_interleaved_runs_and_steps(pair: tuple[psycopg.Connection, psycopg.Connection]) -> None:
    def setup(conn: psycopg.Connection) -> None:
        create_flow(conn, "mix")
        add_step(conn, "mix", "m", step_type="map")
        add_step(conn, "mix", "s")
        add_step(conn, "mix", "after", ["m", "s"])
        _start(conn, "mix", RUN_A, [1, 2, 3])
        _start(conn, "mix", RUN_B, [4, 5])

    def entries(conn: psycopg.Connection) -> list[Entry]:
        tasks = _read_all(conn, "mix")
        by_key = {(t["run_id"], t["step_slug"], t["task_index"]): t for t in tasks}
        order = [
            (RUN_A, "m", 0), (RUN_B, "m", 0), (RUN_A, "m", 1), (RUN_A, "s", 0),
            (RUN_B, "s", 0), (RUN_B, "m", 1), (RUN_A, "m", 2),
        ]  # fmt: skip
        return [(r, s, i, {"v": by_key[(r, s, i)]["task_index"]}) for r, s, i in order]

    assert_same_completion(pair, setup, entries)
    assert_same_completion(
        pair, lambda c: None, lambda c: _entries(_read_all(c, "mix"), lambda t: "done")
    )


# -- final completions of single steps, set-based ------------------------------------------


def _runs(count: int) -> list[uuid.UUID]:
    return [uuid.UUID(int=0xD000 + n) for n in range(count)]


def dag_flow(conn: psycopg.Connection) -> None:
    """a -> (b, c after a 5 s start delay) -> d, in four runs; a second flow beside it."""
    create_flow(conn, "dag")
    add_step(conn, "dag", "a")
    add_step(conn, "dag", "b", ["a"])
    add_step(conn, "dag", "c", ["a"], start_delay=5)
    add_step(conn, "dag", "d", ["b", "c"])
    create_flow(conn, "pair")
    add_step(conn, "pair", "x")
    add_step(conn, "pair", "y", ["x"])
    for n, run_id in enumerate(_runs(4)):
        _start(conn, "dag", run_id, {"n": n})
        _start(conn, "pair", uuid.UUID(int=0xE000 + n), {"n": n})


def test_a_dag_of_single_steps_wave_by_wave(
    pair: tuple[psycopg.Connection, psycopg.Connection],
) -> None:
    def wave(conn: psycopg.Connection) -> list[Entry]:
        make_visible(conn, "dag")
        tasks = [*_read_all(conn, "dag"), *_read_all(conn, "pair")]
        # runs of both flows alternate; each step's output is its input's size
        tasks.sort(key=lambda t: (t["run_id"].int & 0xFFF, t["run_id"].int))
        return _entries(tasks, lambda t: {"from": t["step_slug"], "size": len(t["input"])})

    # a and x in 8 runs (x unlocks y at once, a unlocks b and the delayed c)
    assert_same_completion(pair, dag_flow, wave, groups=1)
    # b, c (now visible) and y: every run twice in a row, so groups are cut there
    assert_same_completion(pair, lambda c: None, wave)
    # d completes the dag runs
    rows = assert_same_completion(pair, lambda c: None, wave, groups=1)
    assert len(rows) == 4
    single, _ = pair
    assert scalar(single, "select count(*) from pgflow.runs where status = 'completed'") == 8


def test_start_delays_and_queues_split_the_sends(
    pair: tuple[psycopg.Connection, psycopg.Connection],
) -> None:
    def setup(conn: psycopg.Connection) -> None:
        create_flow(conn, "slow")
        add_step(conn, "slow", "first")
        add_step(conn, "slow", "later", ["first"], start_delay=30)
        add_step(conn, "slow", "now", ["first"])
        create_flow(conn, "fast")
        add_step(conn, "fast", "first")
        add_step(conn, "fast", "next", ["first"])
        for n, run_id in enumerate(_runs(3)):
            _start(conn, "slow", run_id, n)
            _start(conn, "fast", uuid.UUID(int=0xE000 + n), n)

    def entries(conn: psycopg.Connection) -> list[Entry]:
        slow = _read_all(conn, "slow")
        fast = _read_all(conn, "fast")
        mixed = [t for both in zip(slow, fast, strict=True) for t in both]
        return _entries(mixed, lambda t: t["input"])

    assert_same_completion(pair, setup, entries, groups=1)


def test_groups_stop_where_other_entries_start(
    pair: tuple[psycopg.Connection, psycopg.Connection],
) -> None:
    def setup(conn: psycopg.Connection) -> None:
        single_flow(conn)
        create_flow(conn, "cond")
        add_step(conn, "cond", "a")
        add_step(conn, "cond", "b", ["a"], required_input_pattern={"a": 1})
        _start(conn, "cond", uuid.UUID(int=0xF001), {})
        create_flow(conn, "feeds")
        add_step(conn, "feeds", "list")
        add_step(conn, "feeds", "each", ["list"], step_type="map")
        _start(conn, "feeds", uuid.UUID(int=0xF002), {})
        for n, run_id in enumerate(_runs(4)):
            _start(conn, "one", run_id, {"n": n})

    def entries(conn: psycopg.Connection) -> list[Entry]:
        one = _entries(_read_all(conn, "one"), lambda t: "done")
        cond = _entries(_read_all(conn, "cond"), lambda t: 1)
        feeds = _entries(_read_all(conn, "feeds"), lambda t: [1, 2])
        late = [(one[0][0], "only", 0, "late")]
        # group, a conditional flow's entry, group, a step feeding a map, a repeated
        # entry (a late callback by then), the rest as a group
        return [*one[:2], *cond, *one[2:4], *feeds, *late, *one[4:]]

    assert_same_completion(pair, setup, entries, groups=3)


def test_a_batch_longer_than_one_group_window(
    pair: tuple[psycopg.Connection, psycopg.Connection],
) -> None:
    def setup(conn: psycopg.Connection) -> None:
        create_flow(conn, "many")
        add_step(conn, "many", "only")
        conn.execute(
            "select pgflow.start_flow('many', jsonb_build_object('n', n),"
            " ('00000000-0000-0000-0000-' || lpad(n::text, 12, '0'))::uuid)"
            " from generate_series(1, 230) as n"
        )

    assert_same_completion(
        pair,
        setup,
        lambda c: _entries(_read_all(c, "many", qty=300), lambda t: t["input"]),
        groups=2,
    )


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    deps=st.lists(st.lists(st.booleans(), max_size=4), min_size=1, max_size=5),
    delays=st.lists(st.sampled_from([None, 0, 20]), min_size=5, max_size=5),
    runs=st.integers(min_value=1, max_value=4),
    seed=st.integers(min_value=0, max_value=2**32),
    extra=st.lists(st.integers(min_value=0, max_value=40), max_size=4),
)
def test_any_dag_of_single_steps(
    pair: tuple[psycopg.Connection, psycopg.Connection],
    deps: list[list[bool]],
    delays: list[int | None],
    runs: int,
    seed: int,
    extra: list[int],
) -> None:
    """A random DAG of single steps (random start delays) in a few runs, completed wave by
    wave in a random order, with repeated and wrong entries mixed in; a fresh flow per
    example."""
    flow = f"d_{uuid.uuid4().hex[:10]}"
    slugs = [f"s{n}" for n in range(len(deps))]
    run_ids = [uuid.uuid4() for _ in range(runs)]

    def setup(conn: psycopg.Connection) -> None:
        create_flow(conn, flow)
        for n, slug in enumerate(slugs):
            parents = [slugs[p] for p, on in enumerate(deps[n][:n]) if on]
            add_step(conn, flow, slug, parents, start_delay=delays[n])
        for n, run_id in enumerate(run_ids):
            _start(conn, flow, run_id, {"run": n})

    def wave(conn: psycopg.Connection) -> list[Entry]:
        make_visible(conn, flow)
        tasks = _entries(_read_all(conn, flow), lambda t: {"step": t["step_slug"]})
        tasks.sort(key=lambda e: (str(e[1]), str(e[0])))
        random.Random(seed).shuffle(tasks)
        for n in extra:
            if tasks:
                run_id, step, index, _ = tasks[n % len(tasks)]
                tasks.insert(n % (len(tasks) + 1), (run_id, step, (index or 0) + n % 2, "again"))
        return tasks

    single, _ = pair
    assert_same_completion(pair, setup, lambda c: [])
    for _ in range(len(slugs)):
        assert_same_completion(pair, lambda c: None, wave)
        if not scalar(
            single,
            "select count(*) from pgflow.runs where flow_slug = %s and status = 'started'",
            flow,
        ):
            break
    assert (
        scalar(
            single,
            "select count(*) from pgflow.runs where flow_slug = %s and status = 'completed'",
            flow,
        )
        == runs
    )


def violation_flow(conn: psycopg.Connection) -> None:
    create_flow(conn, "tv")
    add_step(conn, "tv", "big", step_type="map")
    add_step(conn, "tv", "bad")
    add_step(conn, "tv", "child", ["bad"], step_type="map")
    _start(conn, "tv", RUN_A, [1, 2, 3, 4, 5])


def test_a_type_violation_in_the_middle_of_a_batch(
    pair: tuple[psycopg.Connection, psycopg.Connection],
) -> None:
    def entries(conn: psycopg.Connection) -> list[Entry]:
        _read_all(conn, "tv", qty=4)  # bad, big 0..2 started, big 3..4 queued
        return [
            (RUN_A, "big", 0, "fine"),
            (RUN_A, "big", 1, "fine"),
            (RUN_A, "bad", 0, {"not": "an array"}),
            (RUN_A, "big", 2, "after the failure"),
            (RUN_A, "big", 3, "never started"),
        ]

    rows = assert_same_completion(pair, violation_flow, entries)
    assert [r["status"] for r in rows] == [
        "completed",
        "completed",
        "failed",
        "cancelled",
        "cancelled",
    ]


def test_unknown_runs_and_null_entries(pair: tuple[psycopg.Connection, psycopg.Connection]) -> None:
    unknown = uuid.uuid4()

    def entries(conn: psycopg.Connection) -> list[Entry]:
        tasks = _entries(_read_all(conn, "one"), lambda t: 1)
        return [(unknown, "only", 0, 1), (None, None, None, None), (RUN_A, None, 0, 1), *tasks]

    assert_same_completion(pair, single_flow, entries)


def test_empty_and_null_arrays_complete_nothing(conn: psycopg.Connection) -> None:
    assert fetch(conn, "select * from pgflow.complete_tasks('{}', '{}', '{}', '{}')") == []
    assert fetch(conn, "select * from pgflow.complete_tasks(null, null, null, null)") == []


@pytest.mark.parametrize(
    ("arrays", "lengths"),
    [
        (
            "array[gen_random_uuid()], '{}', '{}', '{}'",
            "run_ids 1, step_slugs 0, task_indexes 0, outputs 0",
        ),
        (
            "array[gen_random_uuid()], array['a'], array[0], null",
            "run_ids 1, step_slugs 1, task_indexes 1, outputs 0",
        ),
        ("'{}', '{}', array[1, 2], '{}'", "run_ids 0, step_slugs 0, task_indexes 2, outputs 0"),
    ],
)
def test_arrays_of_different_lengths_are_refused(
    conn: psycopg.Connection, arrays: str, lengths: str
) -> None:
    with pytest.raises(psycopg.errors.RaiseException) as info:
        conn.execute(f"select * from pgflow.complete_tasks({arrays})")
    assert info.value.diag.message_primary == f"batch arrays differ in length: {lengths}"


def test_generated_client_maps_the_length_error(conn: psycopg.Connection) -> None:
    from pgweave_client import PgflowClient
    from pgweave_client.errors import BatchLengthMismatchError

    with pytest.raises(BatchLengthMismatchError) as info:
        PgflowClient(conn).complete_tasks([uuid.uuid4()], [], [], [])
    assert info.value.params == {
        "run_ids_length": "1",
        "step_slugs_length": "0",
        "task_indexes_length": "0",
        "outputs_length": "0",
    }


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    size=st.integers(min_value=1, max_value=6),
    started=st.integers(min_value=0, max_value=6),
    picks=st.lists(st.integers(min_value=-1, max_value=7), min_size=0, max_size=12),
    split=st.integers(min_value=0, max_value=12),
)
def test_any_sequence_of_map_completions(
    pair: tuple[psycopg.Connection, psycopg.Connection],
    size: int,
    started: int,
    picks: list[int],
    split: int,
) -> None:
    """Random entries (repeats, queued and unknown tasks) over a map and its dependent
    map, in two batches; a fresh flow per example."""
    flow = f"p_{uuid.uuid4().hex[:10]}"
    run_id = uuid.uuid4()

    def setup(conn: psycopg.Connection) -> None:
        create_flow(conn, flow)
        add_step(conn, flow, "m1", step_type="map")
        add_step(conn, flow, "m2", ["m1"], step_type="map")
        _start(conn, flow, run_id, list(range(size)))
        if started:
            read_and_start(conn, flow, vt=30, qty=started)

    entries: list[Entry] = [(run_id, "m1", None if p < 0 else p, p * 3) for p in picks]
    assert_same_completion(pair, setup, lambda c: entries[:split])
    assert_same_completion(pair, lambda c: None, lambda c: entries[split:])
    assert_same_completion(
        pair,
        lambda c: None,
        lambda c: _entries(read_and_start(c, flow, vt=30, qty=50), lambda t: t["input"]),
    )


# -- read_and_start_tasks -------------------------------------------------------------------


def _two_phase(conn: psycopg.Connection, flow: str, worker: uuid.UUID, qty: int) -> list[Row]:
    with conn.transaction():
        ids = [
            r[0]
            for r in conn.execute(
                "select msg_id from pgmq.read_with_poll(%s, 5, %s, 1, 100)", (flow, qty)
            ).fetchall()
        ]
        return fetch(conn, "select * from pgflow.start_tasks(%s, %s, %s)", flow, ids, worker)


def _one_call(conn: psycopg.Connection, flow: str, worker: uuid.UUID, qty: int) -> list[Row]:
    return fetch(conn, "select * from pgflow.read_and_start_tasks(%s, %s, %s)", flow, worker, qty)


@pytest.mark.parametrize("qty", [1, 3, 10])
def test_read_and_start_tasks_is_read_then_start(
    pair: tuple[psycopg.Connection, psycopg.Connection], qty: int
) -> None:
    single, batch = pair
    worker = uuid.UUID("22222222-2222-2222-2222-222222222222")
    for conn in pair:
        map_flow(5, uuid.UUID("dddddddd-0000-0000-0000-000000000004"))(conn)
        single_flow(conn)
        ensure_worker(conn, "maps", worker)
        # a run failed by hand: its message is read but its task is not started
        conn.execute("update pgflow.runs set status = 'failed' where run_id = %s", (RUN_B,))
    for flow in ("maps", "one", "maps", "one"):
        expected = _two_phase(single, flow, worker, qty)
        got = _one_call(batch, flow, worker, qty)
        assert _norm(got) == _norm(expected)
        assert snapshot(batch) == snapshot(single)


def test_read_and_start_tasks_on_an_empty_queue_and_a_missing_one(conn: psycopg.Connection) -> None:
    create_flow(conn, "empty")
    worker = ensure_worker(conn, "empty")
    assert _one_call(conn, "empty", worker, 10) == []
    with pytest.raises(psycopg.errors.UndefinedTable):
        _one_call(conn, "no_such_flow", worker, 10)


# -- locking --------------------------------------------------------------------------------


def test_complete_tasks_locks_its_runs_up_front_in_run_id_order(db: str) -> None:
    """Batches naming the same runs in different orders cannot deadlock: a batch takes
    every run lock first, lowest run_id first, before completing anything."""
    low, high = sorted([uuid.uuid4(), uuid.uuid4()])
    with psycopg.connect(db, autocommit=True) as setup:
        create_flow(setup, "locks")
        add_step(setup, "locks", "only")
        for run_id in (low, high):
            _start(setup, "locks", run_id, {})
        tasks = {t["run_id"]: t for t in read_and_start(setup, "locks", vt=30, qty=2)}
    with (
        psycopg.connect(db) as holder,
        psycopg.connect(db, autocommit=True) as batch,
        psycopg.connect(db) as probe,
    ):
        holder.execute("select 1 from pgflow.runs where run_id = %s for update", (high,))
        done = threading.Event()

        def run_batch() -> None:
            # high's entry first: without the up-front locks it would wait for high
            # before ever locking low
            batched(batch, [(r, "only", 0, "x") for r in (high, low)])
            done.set()

        thread = threading.Thread(target=run_batch)
        thread.start()
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                # the batch holds low (taken first) while it waits for high
                try:
                    with probe.transaction():
                        probe.execute(
                            "select 1 from pgflow.runs where run_id = %s for update nowait", (low,)
                        )
                except psycopg.errors.LockNotAvailable:
                    break
                time.sleep(0.02)
            else:
                pytest.fail("complete_tasks did not lock the lower run_id first")
            assert not done.is_set()
        finally:
            holder.rollback()
            thread.join(10)
    assert done.is_set()
    assert set(tasks) == {low, high}


def test_a_group_waits_for_a_concurrent_completion_of_one_of_its_runs(db: str) -> None:
    """A concurrent complete_task holds one run of a batch: the batch waits for it, then
    takes that entry as a late callback and the others set-based, nothing done twice."""
    runs = sorted(uuid.uuid4() for _ in range(5))
    with psycopg.connect(db, autocommit=True) as setup:
        create_flow(setup, "race")
        add_step(setup, "race", "only")
        for run_id in runs:
            _start(setup, "race", run_id, {})
        assert len(read_and_start(setup, "race", vt=30, qty=5)) == 5
    held = runs[1]
    order = [runs[0], runs[2], runs[3], held, runs[4]]
    result: dict[str, Any] = {}
    with (
        psycopg.connect(db) as holder,
        psycopg.connect(db, autocommit=True) as batch,
        psycopg.connect(db, autocommit=True) as probe,
    ):
        holder.execute("select pgflow.complete_task(%s, 'only', 0, '\"holder\"')", (held,))
        batch_pid = batch.info.backend_pid

        def run_batch() -> None:
            result["rows"], result["groups"] = batched(
                batch, [(r, "only", 0, "batch") for r in order]
            )

        thread = threading.Thread(target=run_batch)
        thread.start()
        try:
            deadline = time.monotonic() + 5
            while (
                scalar(
                    probe, "select wait_event_type from pg_stat_activity where pid = %s", batch_pid
                )
                != "Lock"
            ):
                assert time.monotonic() < deadline, "the batch did not wait for the held run"
                time.sleep(0.02)
            assert "rows" not in result
        finally:
            holder.commit()
            thread.join(10)
        outputs = {
            r["run_id"]: r["output"]
            for r in fetch(probe, "select run_id, output from pgflow.step_tasks")
        }
        assert outputs == {r: ("holder" if r == held else "batch") for r in runs}
        assert [r["run_id"] for r in result["rows"]] == order
        assert result["groups"] == 1  # runs[0], runs[2], runs[3]; then held, then runs[4]
        assert scalar(probe, "select count(*) from pgflow.runs where status = 'completed'") == 5
        assert scalar(probe, "select count(*) from pgmq.q_race") == 0
        assert scalar(probe, "select count(distinct msg_id) from pgmq.a_race") == 5
        assert scalar(probe, "select count(*) from pgmq.a_race") == 5


def test_read_and_start_tasks_skips_a_task_another_transaction_holds(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        create_flow(conn, "held")
        add_step(conn, "held", "m", step_type="map")
        _start(conn, "held", RUN_A, [0, 1, 2])
        worker = ensure_worker(conn, "held")
        with psycopg.connect(db) as holder:
            holder.execute(
                "select 1 from pgflow.step_tasks where run_id = %s and task_index = 1 for update",
                (RUN_A,),
            )
            started = time.monotonic()
            rows = _one_call(conn, "held", worker, 10)
            assert time.monotonic() - started < 2  # not waited for
            assert [r["task_index"] for r in rows] == [0, 2]
            holder.rollback()
        statuses: dict[int, str] = dict(
            conn.execute(
                "select task_index, status from pgflow.step_tasks where run_id = %s", (RUN_A,)
            ).fetchall()
        )
        assert statuses == {0: "started", 1: "queued", 2: "started"}
