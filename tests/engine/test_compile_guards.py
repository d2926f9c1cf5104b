"""ensure_flow_compiled's guards: a value that is not a shape is refused with a clear error
and no partial state; recompiling a changed flow (which deletes its runs) needs an admin
session or local mode, and local mode comes from configuration an unprivileged session
cannot change (the database's settings), while admin sessions may SET it as in pgflow's
tests."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pgweave_client import PgflowClient
from pgweave_client.errors import DataLossNotAllowedError, InvalidFlowShapeError
from tests.engine.helpers import fetch, scalar, shape_step
from tests.engine.logins import Connect, Logins

SHAPE = {"steps": [shape_step("first")]}
CHANGED = {"steps": [shape_step("first"), shape_step("second", ["first"])]}
LOCAL_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"


def definitions(conn: psycopg.Connection) -> tuple[Any, ...]:
    """What a compile could change: flows, steps, deps, runs and queues."""
    return (
        fetch(conn, "select * from pgflow.flows order by 1"),
        fetch(conn, "select flow_slug, step_slug, step_type from pgflow.steps order by 1, 2"),
        fetch(conn, "select flow_slug, dep_slug, step_slug from pgflow.deps order by 1, 2, 3"),
        fetch(conn, "select run_id from pgflow.runs order by 1"),
        fetch(conn, "select queue_name from pgmq.list_queues() order by 1"),
    )


def compiled_with_a_run(conn: psycopg.Connection) -> None:
    conn.execute("select pgflow.ensure_flow_compiled('f', %s)", (Jsonb(SHAPE),))
    conn.execute("select pgflow.start_flow('f', '{}')")


NOT_SHAPES = [
    pytest.param("[]", "array", id="array"),
    pytest.param("42", "number", id="number"),
    pytest.param(None, "NULL", id="sql-null"),
    pytest.param("null", "null", id="json-null"),
    pytest.param('"steps"', "string", id="string"),
    pytest.param("{}", "an object without a steps array", id="no-steps"),
    pytest.param('{"steps": {}}', "an object without a steps array", id="steps-object"),
    pytest.param('{"steps": null}', "an object without a steps array", id="steps-null"),
]


@pytest.mark.parametrize(("shape", "got"), NOT_SHAPES)
def test_a_value_that_is_not_a_shape_is_refused_without_a_trace(
    conn: psycopg.Connection, shape: str | None, got: str
) -> None:
    compiled_with_a_run(conn)
    before = definitions(conn)
    message = f"Shape of flow new must be a JSON object with a steps array (got {got})"

    with pytest.raises(psycopg.errors.InvalidParameterValue) as raised:
        conn.execute("select pgflow.ensure_flow_compiled('new', %s::jsonb)", (shape,))
    assert raised.value.diag.message_primary == message
    # nor is an existing flow verified, recompiled or deleted with it
    for allow_data_loss in (False, True):
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute(
                "select pgflow.ensure_flow_compiled('f', %s::jsonb, %s)", (shape, allow_data_loss)
            )
    assert definitions(conn) == before


def test_the_client_maps_the_shape_and_data_loss_errors(
    conn: psycopg.Connection, connect_as: Connect
) -> None:
    compiled_with_a_run(conn)
    with pytest.raises(InvalidFlowShapeError) as shape_error:
        PgflowClient(conn).ensure_flow_compiled("f", Jsonb([]))
    assert shape_error.value.params == {"flow_slug": "f", "got": "array"}
    worker = PgflowClient(connect_as("pgflow_worker"))
    with pytest.raises(DataLossNotAllowedError) as loss_error:
        worker.ensure_flow_compiled("f", Jsonb(CHANGED), True)
    assert loss_error.value.params == {"flow_slug": "f"}


def mismatch_for(session: psycopg.Connection) -> None:
    result = scalar(session, "select pgflow.ensure_flow_compiled('f', %s)", Jsonb(CHANGED))
    assert result["status"] == "mismatch"


@pytest.mark.parametrize(
    "switch",
    [
        "set pgflow.local = on",
        "set pgflow.local = true",
        f"set app.settings.jwt_secret = '{LOCAL_SECRET}'",
        f"select set_config('app.settings.jwt_secret', '{LOCAL_SECRET}', false)",
    ],
)
def test_a_worker_session_cannot_switch_local_mode_on(
    conn: psycopg.Connection, connect_as: Connect, switch: str
) -> None:
    compiled_with_a_run(conn)
    before = definitions(conn)
    worker = connect_as("pgflow_worker")
    worker.execute(switch)

    mismatch_for(worker)
    assert definitions(conn) == before


def test_role_settings_and_connection_options_do_not_switch_local_mode_on(
    conn: psycopg.Connection, logins: Logins
) -> None:
    compiled_with_a_run(conn)
    before = definitions(conn)
    # role-level settings are not read: a role may be able to change its own (GRANT SET
    # ON PARAMETER, or a CREATEROLE role that manages it)
    dsn = logins.dsn("pgflow_worker")
    conn.execute(f"alter role {logins.names[-1]} set pgflow.local = on")
    # nor are connection options, which the client chooses
    with_options = logins.dsn("pgflow_worker")
    for session_dsn, options in ((dsn, ""), (with_options, "-c pgflow.local=on")):
        with psycopg.connect(session_dsn, autocommit=True, options=options) as session:
            assert scalar(session, "select current_setting('pgflow.local')") == "on"
            mismatch_for(session)
    assert definitions(conn) == before


@pytest.mark.parametrize(
    "setting",
    [
        "pgflow.local = on",
        "pgflow.local = '1'",
        f"\"app.settings.jwt_secret\" = '{LOCAL_SECRET}'",
    ],
)
def test_local_mode_set_for_the_database_lets_a_worker_recompile(
    conn: psycopg.Connection, connect_as: Connect, setting: str
) -> None:
    compiled_with_a_run(conn)
    conn.execute(f"alter database {scalar(conn, 'select current_database()')} set {setting}")
    worker = connect_as("pgflow_worker")
    # the session cannot switch it off either: it is the database's configuration
    worker.execute("set pgflow.local = off")
    worker.execute("set app.settings.jwt_secret = ''")

    result = scalar(worker, "select pgflow.ensure_flow_compiled('f', %s)", Jsonb(CHANGED))

    assert result["status"] == "recompiled"
    assert scalar(conn, "select count(*) from pgflow.runs") == 0
    assert scalar(conn, "select count(*) from pgflow.steps") == 2


def test_an_admin_session_may_switch_local_mode_with_set(
    conn: psycopg.Connection, connect_as: Connect
) -> None:
    # (a superuser may too: pgflow's tests toggle it with set_config, see test_definition)
    compiled_with_a_run(conn)
    admin = connect_as("pgflow_admin")
    admin.execute("set pgflow.local = on")

    result = scalar(admin, "select pgflow.ensure_flow_compiled('f', %s)", Jsonb(CHANGED))

    assert result["status"] == "recompiled"
    assert scalar(conn, "select count(*) from pgflow.runs") == 0
