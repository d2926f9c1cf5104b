"""set_vt_batch: per-message visibility offsets in one UPDATE of the queue table."""

from __future__ import annotations

import psycopg
import pytest

from tests.engine.helpers import fetch, queue_messages, vt_seconds_from_now


@pytest.fixture
def queue(conn: psycopg.Connection) -> list[int]:
    """A queue 'q' with three messages; returns their ids."""
    conn.execute("select pgmq.create('q')")
    rows = conn.execute(
        "select * from pgmq.send_batch('q', array['{\"n\": 1}', '{\"n\": 2}', '{\"n\": 3}']::jsonb[])"
    ).fetchall()
    return [row[0] for row in rows]


def test_each_message_gets_its_own_offset(conn: psycopg.Connection, queue: list[int]) -> None:
    first, second, third = queue

    rows = fetch(
        conn,
        "select * from pgflow.set_vt_batch('q', %s, %s)",
        [first, third],
        [30, 120],
    )

    assert {row["msg_id"]: row["message"] for row in rows} == {
        first: {"n": 1},
        third: {"n": 3},
    }
    assert list(rows[0]) == ["msg_id", "read_ct", "enqueued_at", "vt", "message", "headers"]
    assert 29 <= vt_seconds_from_now(conn, "q", first) <= 30
    assert 119 <= vt_seconds_from_now(conn, "q", third) <= 120
    assert vt_seconds_from_now(conn, "q", second) <= 0
    # the returned vt is the stored one
    stored = {m["msg_id"]: m["vt"] for m in queue_messages(conn, "q")}
    assert {row["msg_id"]: row["vt"] for row in rows} == {
        first: stored[first],
        third: stored[third],
    }


def test_zero_offset_makes_a_message_visible_now(
    conn: psycopg.Connection, queue: list[int]
) -> None:
    conn.execute("select pgmq.read('q', 300, 3)")
    assert conn.execute("select * from pgmq.read('q', 1, 3)").fetchall() == []

    fetch(conn, "select * from pgflow.set_vt_batch('q', %s, %s)", queue[:1], [0])

    readable = conn.execute("select msg_id, read_ct from pgmq.read('q', 30, 3)").fetchall()
    assert readable == [(queue[0], 2)]


def test_unknown_ids_return_no_row(conn: psycopg.Connection, queue: list[int]) -> None:
    rows = fetch(
        conn,
        "select * from pgflow.set_vt_batch('q', %s, %s)",
        [queue[1], max(queue) + 100],
        [60, 60],
    )

    assert [row["msg_id"] for row in rows] == [queue[1]]


@pytest.mark.parametrize(
    ("msg_ids", "offsets"),
    [(None, [10]), ([1], None), (None, None)],
)
def test_null_arrays_touch_nothing(
    conn: psycopg.Connection,
    queue: list[int],
    msg_ids: list[int] | None,
    offsets: list[int] | None,
) -> None:
    before = queue_messages(conn, "q")

    rows = fetch(
        conn,
        "select * from pgflow.set_vt_batch('q', %s::bigint[], %s::int[])",
        msg_ids,
        offsets,
    )

    assert rows == []
    assert queue_messages(conn, "q") == before


def test_null_arrays_do_not_need_the_queue(conn: psycopg.Connection) -> None:
    rows = fetch(conn, "select * from pgflow.set_vt_batch('missing', null, '{1}')")

    assert rows == []


def test_lengths_must_match(conn: psycopg.Connection, queue: list[int]) -> None:
    before = queue_messages(conn, "q")

    with pytest.raises(psycopg.errors.RaiseException) as error:
        conn.execute("select * from pgflow.set_vt_batch('q', %s, %s)", (queue[:2], [10]))

    assert error.value.diag.message_primary == "msg_ids length (2) must equal vt_offsets length (1)"
    assert error.value.sqlstate == "P0001"
    assert queue_messages(conn, "q") == before


def test_empty_against_non_empty_is_a_length_mismatch(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.RaiseException) as error:
        conn.execute("select * from pgflow.set_vt_batch('q', '{}'::bigint[], '{5, 6, 7}')")

    assert error.value.diag.message_primary == "msg_ids length (0) must equal vt_offsets length (3)"


def test_empty_arrays_return_nothing(conn: psycopg.Connection, queue: list[int]) -> None:
    before = queue_messages(conn, "q")

    rows = fetch(conn, "select * from pgflow.set_vt_batch('q', '{}'::bigint[], '{}'::int[])")

    assert rows == []
    assert queue_messages(conn, "q") == before


@pytest.mark.parametrize(("msg_ids", "offsets"), [("{}", "{}"), ("{1}", "{5}")])
def test_missing_queue_raises_pgmq_error(
    conn: psycopg.Connection, msg_ids: str, offsets: str
) -> None:
    with pytest.raises(psycopg.errors.UndefinedTable) as error:
        conn.execute("select * from pgflow.set_vt_batch('nope', %s, %s)", (msg_ids, offsets))

    assert error.value.sqlstate == "42P01"
    assert error.value.diag.message_primary == 'relation "pgmq.q_nope" does not exist'


def test_queue_name_is_quoted_not_spliced(conn: psycopg.Connection, queue: list[int]) -> None:
    """A queue name that is not a plain identifier names a (missing) table, nothing else."""
    with pytest.raises(psycopg.errors.UndefinedTable) as error:
        conn.execute(
            "select * from pgflow.set_vt_batch('q set vt = now() from pgmq.q_q', '{1}', '{5}')"
        )

    assert error.value.diag.message_primary == (
        'relation "pgmq.q_q set vt = now() from pgmq.q_q" does not exist'
    )
    assert all(vt_seconds_from_now(conn, "q", msg_id) <= 0 for msg_id in queue)
