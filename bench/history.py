"""A history of finished runs, written straight into the engine's tables (``bench.million``).

Three flows of their own (so the workloads' flows stay empty and verifiable) with the shapes
of W1-W3: ``hist_single`` (one step), ``hist_chain`` (a -> b -> c) and ``hist_map`` (a root
map of 1-16 elements), mixed 60 / 25 / 15 %. Every run is completed as the engine would have
completed it, by set-based SQL (``generate_series``), in the order the engine writes them
(oldest first): the run, one step state per step, one task per step or element with its
output, the archived pgmq message of every task (``pgmq.a_<flow>``, ids from the queue's own
sequence) and one worker per flow and day that ran that day's tasks. Start times are spread
evenly over the past ``days``; a task takes 5-15 ms.

Foreign keys are not checked row by row while filling (``session_replication_role =
replica``); :func:`check` verifies afterwards, set-based, that every row has its parents and
every task its archived message.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

FLOWS = ("hist_single", "hist_chain", "hist_map")

DEFINE = [
    "select pgflow.create_flow('hist_single')",
    "select pgflow.add_step('hist_single', 'only')",
    "select pgflow.create_flow('hist_chain')",
    "select pgflow.add_step('hist_chain', 'a')",
    "select pgflow.add_step('hist_chain', 'b', array['a'])",
    "select pgflow.add_step('hist_chain', 'c', array['b'])",
    "select pgflow.create_flow('hist_map')",
    "select pgflow.add_step('hist_map', 'm', step_type => 'map')",
]

# One row per run: its flow (by i mod 20), map size, start time and task duration unit u.
RUNS = """
create temp table fill_runs as
select g.*, {run_id} as run_id
from (
  select i,
         case when mod(i, 20) < 12 then 'hist_single' when mod(i, 20) < 17 then 'hist_chain'
              else 'hist_map' end as flow_slug,
         case when mod(i, 20) >= 17 then 1 + mod(i::bigint * 7919, 16)::int else 0 end
           as elements,
         now() - interval '1 minute'
           - make_interval(secs => (%(runs)s - i)::float8 * %(span)s / %(runs)s) as started_at,
         make_interval(secs => (5 + mod(i, 11)) / 1000.0 / 3) as u
  from generate_series(1, %(runs)s) as i
) as g
"""

# One row per task: when it was queued, started and completed, its output and message id.
TASKS = """
create temp table fill_tasks as
select r.i, r.run_id, r.flow_slug, x.step_slug, x.k, x.task_index, x.output,
       r.started_at + x.q_off as queued_at,
       r.started_at + x.s_off as started_at,
       r.started_at + x.c_off as completed_at,
       row_number() over (partition by r.flow_slug order by r.i, x.k, x.task_index) as msg_id
from fill_runs as r
cross join lateral (
  select 'only' as step_slug, 0 as k, 0 as task_index, jsonb_build_object('n', r.i) as output,
         interval '0' as q_off, r.u as s_off, 3 * r.u as c_off
  where r.flow_slug = 'hist_single'
  union all
  select s.slug, s.k, 0, to_jsonb(r.i + s.k), 3 * s.k * r.u, (3 * s.k + 1) * r.u,
         (3 * s.k + 3) * r.u
  from (values ('a', 0), ('b', 1), ('c', 2)) as s (slug, k)
  where r.flow_slug = 'hist_chain'
  union all
  select 'm', 0, j, to_jsonb(r.i + j + 1), interval '0', r.u + j * interval '200 us',
         3 * r.u + j * interval '200 us'
  from generate_series(0, r.elements - 1) as j
  where r.flow_slug = 'hist_map'
) as x
"""

# The worker of a flow and a day (a new worker process every day).
WORKER_ID = "md5(%s || date_trunc('day', %s)::text)::uuid"

STEPS: list[tuple[str, str]] = [
    (
        "workers",
        f"""
        insert into pgflow.workers
          (worker_id, queue_name, function_name, started_at, last_heartbeat_at, stopped_at)
        select {WORKER_ID % ("t.flow_slug", "t.started_at")}, t.flow_slug, 'history',
               min(t.started_at), max(t.completed_at), max(t.completed_at)
        from fill_tasks as t
        group by 1, 2
        """,
    ),
    (
        "runs",
        """
        insert into pgflow.runs
          (run_id, flow_slug, status, input, output, remaining_steps, started_at, completed_at)
        select r.run_id, r.flow_slug, 'completed',
               case when r.flow_slug = 'hist_map'
                    then to_jsonb(array(select generate_series(r.i, r.i + r.elements - 1)))
                    else jsonb_build_object('n', r.i) end,
               case r.flow_slug
                 when 'hist_single' then jsonb_build_object('only', jsonb_build_object('n', r.i))
                 when 'hist_chain' then jsonb_build_object('c', r.i + 2)
                 else jsonb_build_object('m', to_jsonb(array(
                   select generate_series(r.i + 1, r.i + r.elements))))
               end,
               0, r.started_at, t.completed_at
        from fill_runs as r
        join (select run_id, max(completed_at) as completed_at from fill_tasks group by run_id)
          as t using (run_id)
        order by r.i
        """,
    ),
    (
        "step_states",
        """
        insert into pgflow.step_states
          (flow_slug, run_id, step_slug, status, remaining_tasks, remaining_deps, created_at,
           started_at, completed_at, initial_tasks, output)
        select t.flow_slug, t.run_id, t.step_slug, 'completed', 0, 0, r.started_at,
               min(t.queued_at), max(t.completed_at), count(*),
               case when t.flow_slug = 'hist_map'
                    then jsonb_agg(t.output order by t.task_index)
                    else min(t.output::text)::jsonb end
        from fill_tasks as t
        join fill_runs as r using (run_id)
        group by r.i, t.flow_slug, t.run_id, t.k, t.step_slug, r.started_at
        order by r.i, t.k
        """,
    ),
    (
        "step_tasks",
        f"""
        insert into pgflow.step_tasks
          (flow_slug, run_id, step_slug, message_id, task_index, status, attempts_count, output,
           queued_at, started_at, completed_at, last_worker_id)
        select t.flow_slug, t.run_id, t.step_slug, t.msg_id, t.task_index, 'completed', 1,
               t.output, t.queued_at, t.started_at, t.completed_at,
               {WORKER_ID % ("t.flow_slug", "t.started_at")}
        from fill_tasks as t
        order by t.i, t.k, t.task_index
        """,
    ),
]

ARCHIVE = """
insert into pgmq.{archive}
  (msg_id, read_ct, enqueued_at, last_read_at, archived_at, vt, message, headers)
select t.msg_id, 1, t.queued_at, t.started_at - interval '300 us', t.completed_at,
       t.started_at + interval '62 s',
       jsonb_build_object('run_id', t.run_id::text, 'flow_slug', t.flow_slug,
                          'step_slug', t.step_slug, 'task_index', t.task_index),
       null
from fill_tasks as t
where t.flow_slug = %(flow)s
order by t.msg_id
"""


def define_flows(conn: psycopg.Connection) -> None:
    """Create the three history flows (and their queues)."""
    for statement in DEFINE:
        conn.execute(statement)


def fill(conn: psycopg.Connection, runs: int, days: float) -> dict[str, float]:
    """Write ``runs`` completed runs spread over the past ``days`` into the engine's tables
    (one transaction, time-ordered run ids as the engine picks them); returns the seconds of
    every step."""
    seconds: dict[str, float] = {}

    def timed(name: str, statement: str | sql.Composed, **params: Any) -> None:
        t0 = time.perf_counter()
        conn.execute(statement, params)
        seconds[name] = time.perf_counter() - t0

    with conn.transaction():
        conn.execute("set local session_replication_role = replica")
        conn.execute("set local work_mem = '256MB'")
        timed(
            "plan runs",
            RUNS.format(run_id="pgflow._uuid_v7(g.started_at)"),
            runs=runs,
            span=days * 86400,
        )
        timed("plan tasks", TASKS)
        for name, statement in STEPS:
            timed(name, statement)
        for flow in FLOWS:
            archive = sql.Identifier(f"a_{flow}")
            timed(f"pgmq.a_{flow}", sql.SQL(ARCHIVE).format(archive=archive), flow=flow)
            conn.execute(
                "select setval(%s, (select max(msg_id) from fill_tasks where flow_slug = %s))",
                (f"pgmq.q_{flow}_msg_id_seq", flow),
            )
        conn.execute("drop table fill_tasks, fill_runs")
    return seconds


def vacuum_analyze(conn: psycopg.Connection) -> float:
    """VACUUM ANALYZE the engine's tables and the history archives; returns the seconds."""
    tables = ["pgflow.runs", "pgflow.step_states", "pgflow.step_tasks", "pgflow.workers"]
    tables += [f"pgmq.a_{flow}" for flow in FLOWS]
    t0 = time.perf_counter()
    for table in tables:
        conn.execute(f"vacuum analyze {table}")
    return time.perf_counter() - t0


CHECKS = {
    "step states without their run": """
        select count(*) from pgflow.step_states as s
        where not exists (select 1 from pgflow.runs as r where r.run_id = s.run_id)""",
    "tasks without their step state": """
        select count(*) from pgflow.step_tasks as t
        where not exists (select 1 from pgflow.step_states as s
                          where s.run_id = t.run_id and s.step_slug = t.step_slug)""",
    "tasks without their worker": """
        select count(*) from pgflow.step_tasks as t
        where not exists (select 1 from pgflow.workers as w where w.worker_id = t.last_worker_id)""",
    "runs whose step states are not all completed": """
        select count(*) from pgflow.runs as r
        where exists (select 1 from pgflow.step_states as s
                      where s.run_id = r.run_id and s.status <> 'completed')""",
    "tasks whose message is not archived": " union all ".join(
        f"""(select count(*) from pgflow.step_tasks as t where t.flow_slug = '{flow}'
             and not exists (select 1 from pgmq.a_{flow} as a where a.msg_id = t.message_id))"""
        for flow in FLOWS
    ),
}


def check(conn: psycopg.Connection) -> list[str]:
    """Every inconsistency of the history with what the engine writes (empty: consistent)."""
    problems = []
    for name, query in CHECKS.items():
        missing = sum(int(row[0]) for row in conn.execute(query).fetchall())
        if missing:
            problems.append(f"{missing} {name}")
    return problems


def sizes(conn: psycopg.Connection) -> dict[str, dict[str, int]]:
    """Rows and total size (with indexes) of the engine's tables and the history archives."""
    tables = ["pgflow.runs", "pgflow.step_states", "pgflow.step_tasks", "pgflow.workers"]
    tables += [f"pgmq.a_{flow}" for flow in FLOWS]
    result = {}
    for table in tables:
        row = conn.execute(
            f"select count(*), pg_total_relation_size('{table}') from {table}"
        ).fetchone()
        assert row is not None
        result[table] = {"rows": int(row[0]), "bytes": int(row[1])}
    return result
