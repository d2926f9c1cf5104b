declare
  locked_runs uuid[];
  locked_steps text[];
  locked_indexes integer[];
  paused_runs uuid[];
begin
  -- Only queued tasks of started steps of started runs are started; every other id is
  -- ignored. Their rows are locked first: start_tasks waits for a row another
  -- transaction holds, as one statement would; read_and_start_tasks skips it (that
  -- transaction is cancelling or skipping the task and archives its message next, which
  -- the reader holds since its read: waiting would deadlock).
  -- A run's status is read by a scalar subquery on run_id alone: beside run_id,
  -- "status = 'started'" lets a plan cached on a young database (no statistics yet) pick
  -- idx_runs_status and walk every started run.
  if _start_tasks.skip_locked then
    select array_agg(t.run_id), array_agg(t.step_slug), array_agg(t.task_index)
    into locked_runs, locked_steps, locked_indexes
    from (
      select t.run_id, t.step_slug, t.task_index
      from pgflow.step_tasks as t
      join pgflow.step_states as ss on ss.run_id = t.run_id and ss.step_slug = t.step_slug
      where t.flow_slug = _start_tasks.flow_slug
        and t.message_id = any(_start_tasks.msg_ids)
        and t.status = 'queued'
        and (select r.status from pgflow.runs as r where r.run_id = t.run_id) = 'started'
        and ss.status = 'started'
      for update of t skip locked
    ) as t;
  else
    select array_agg(t.run_id), array_agg(t.step_slug), array_agg(t.task_index)
    into locked_runs, locked_steps, locked_indexes
    from (
      select t.run_id, t.step_slug, t.task_index
      from pgflow.step_tasks as t
      join pgflow.step_states as ss on ss.run_id = t.run_id and ss.step_slug = t.step_slug
      where t.flow_slug = _start_tasks.flow_slug
        and t.message_id = any(_start_tasks.msg_ids)
        and t.status = 'queued'
        and (select r.status from pgflow.runs as r where r.run_id = t.run_id) = 'started'
        and ss.status = 'started'
      -- in message id order, as pause_run and pause_flow lock them: no deadlock
      order by t.message_id
      for update of t
    ) as t;
  end if;

  -- Run control (pause_run, pause_flow): the tasks of a paused run, or of any run of a
  -- paused flow, stay queued and their messages are parked. Read after the locks above
  -- (a new snapshot), so a pause that held these rows until its commit is seen. Each run
  -- is probed by its primary key: as "run_id = any(locked_runs)" the plan cached on a
  -- young database was a sequential scan of runs on every call (0.2 ms at 2,000 runs).
  select array_agg(u.run_id) into paused_runs
  from (select distinct k.run_id from unnest(locked_runs) as k(run_id)) as u
  where exists (
      select 1 from pgflow.flows as f
      where f.flow_slug = _start_tasks.flow_slug and f.paused_at is not null
    )
    or (select r.paused_at from pgflow.runs as r where r.run_id = u.run_id) is not null;
  if paused_runs is not null then
    select h.run_ids, h.step_slugs, h.task_indexes
    into locked_runs, locked_steps, locked_indexes
    from pgflow._hold_paused_tasks(
      _start_tasks.flow_slug, paused_runs, locked_runs, locked_steps, locked_indexes
    ) as h;
  end if;

  -- The locked rows cannot change under this transaction, so the statement needs no
  -- locking clause of its own.
  return query
    with startable as (
      select k.run_id, k.step_slug, k.task_index
      from unnest(locked_runs, locked_steps, locked_indexes) as k(run_id, step_slug, task_index)
    ),
    started as (
      update pgflow.step_tasks as t
      set status = 'started',
          attempts_count = t.attempts_count + 1,
          -- never before the task was queued: the transaction's now() can precede a
          -- queued_at committed after it began (its read sees that commit)
          started_at = greatest(now(), t.queued_at),
          last_worker_id = _start_tasks.worker_id
      from startable
      where t.run_id = startable.run_id
        and t.step_slug = startable.step_slug
        and t.task_index = startable.task_index
      returning t.*
    ),
    timeouts as (
      select st.message_id, coalesce(s.opt_timeout, f.opt_timeout) + 2 as vt_offset
      from started as st
      join pgflow.steps as s on s.flow_slug = st.flow_slug and s.step_slug = st.step_slug
      join pgflow.flows as f on f.flow_slug = st.flow_slug
    ),
    -- Keep each started message invisible for the step's timeout + 2 s, so a long task is
    -- not handed to a second worker. pgflow puts this call in a CTE nothing reads, which
    -- PostgreSQL never runs; the final query's filter below reads this one, so it runs.
    visibility as (
      select count(*) as extended
      from pgflow.set_vt_batch(
        _start_tasks.flow_slug,
        (select array_agg(x.message_id order by x.message_id) from timeouts as x),
        (select array_agg(x.vt_offset order by x.message_id) from timeouts as x)
      )
    ),
    -- Each run's input once per call, and decompressed once (#> '{}' is the identity): a
    -- large root map input would otherwise be decompressed again for every task.
    run_inputs as materialized (
      select r.run_id, r.input #> '{}' as input
      from pgflow.runs as r
      where r.run_id in (select st.run_id from started as st)
    )
    select
      st.flow_slug,
      st.run_id,
      st.step_slug,
      case
        -- root map: its element of the flow input
        when s.step_type = 'map' and s.deps_count = 0 then r.input -> st.task_index
        -- dependent map: its element of the single dependency's output array
        when s.step_type = 'map' then (
          select dep_state.output -> st.task_index
          from pgflow.deps as d
          join pgflow.step_states as dep_state
            on dep_state.run_id = st.run_id and dep_state.step_slug = d.dep_slug
          where d.flow_slug = st.flow_slug
            and d.step_slug = st.step_slug
        )
        -- single: {dep_slug: output} over completed dependencies (skipped ones are absent)
        else coalesce(
          (
            select jsonb_object_agg(d.dep_slug, dep_state.output)
            from pgflow.deps as d
            join pgflow.step_states as dep_state
              on dep_state.run_id = st.run_id and dep_state.step_slug = d.dep_slug
            where d.flow_slug = st.flow_slug
              and d.step_slug = st.step_slug
              and dep_state.status = 'completed'
          ),
          '{}'::jsonb
        )
      end as input,
      st.message_id as msg_id,
      st.task_index,
      -- only root single steps get the flow input; the others load it lazily
      case when s.step_type = 'single' and s.deps_count = 0 then r.input end as flow_input
    from started as st
    join run_inputs as r on r.run_id = st.run_id
    join pgflow.steps as s on s.flow_slug = st.flow_slug and s.step_slug = st.step_slug
    where (select v.extended from visibility as v) >= 0;
end;
