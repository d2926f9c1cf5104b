"""TEST FIXTURE ONLY: stand-ins for the engine's run-control functions (cancel_run,
pause_run, …), created in a test database while the real ones are not in the spec yet.
Each records its call in ``dashboard_test.calls``; ``cancel_run`` refuses runs that are
not 'started' with an error, as an engine would."""

from __future__ import annotations

import psycopg

RUN_FUNCTIONS = ("pause_run", "unpause_run", "retry_run", "resume_run")
FLOW_FUNCTIONS = ("pause_flow", "unpause_flow")


def install_stub_actions(conn: psycopg.Connection) -> None:
    """Create the stubs (and the table recording their calls)."""
    conn.execute(
        "create schema dashboard_test;"
        " create table dashboard_test.calls (fn text, target text, reason text);"
        " create function pgflow.cancel_run(run_id uuid, reason text default null) returns void"
        " language plpgsql as $$ begin"
        "   if not exists (select 1 from pgflow.runs r where r.run_id = cancel_run.run_id and r.status = 'started') then"
        "     raise exception 'run % is not running <b>', cancel_run.run_id;"
        "   end if;"
        "   insert into dashboard_test.calls values ('cancel_run', run_id::text, reason); end $$;"
    )
    for name in RUN_FUNCTIONS:
        conn.execute(
            f"create function pgflow.{name}(run_id uuid) returns void language sql"
            f" as $$ insert into dashboard_test.calls values ('{name}', run_id::text, null) $$"
        )
    for name in FLOW_FUNCTIONS:
        conn.execute(
            f"create function pgflow.{name}(flow_slug text) returns void language sql"
            f" as $$ insert into dashboard_test.calls values ('{name}', flow_slug, null) $$"
        )


def calls(conn: psycopg.Connection) -> list[tuple[str, str, str | None]]:
    """The stubs' calls, in order."""
    rows = conn.execute("select fn, target, reason from dashboard_test.calls").fetchall()
    return [(fn, target, reason) for fn, target, reason in rows]
