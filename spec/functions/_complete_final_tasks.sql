declare
  v_events jsonb;
  v_more jsonb;
  v_flow text;
  archive_flows text[];
  archive_ids bigint[];
  st_flow text[];
  st_run uuid[];
  st_step text[];
  st_tasks integer[];
  st_delay integer[];
  m integer;
  k integer := 1;
  l integer;
  messages jsonb[];
  msg_ids bigint[];
  ev jsonb;
begin
  -- The caller (complete_tasks) has checked every entry: a started single-step task, the
  -- last task of its started step, in a started run of a flow without conditions, no map
  -- depending on the step, no taskless step waiting in the run, each run once. So each
  -- entry does exactly what complete_task's normal path does, and no entry affects
  -- another: the statements below do it for all of them at once, and the events go out
  -- at the end in the order the complete_task calls would have sent them.
  -- A set-based copy on purpose: the batch it serves went from 1.27 / 0.99 to 3.27 / 2.88
  -- x pgbench (W1, K = 1 / 2, bench/README.md), and per-run functions made thin wrappers
  -- over set-based ones halved the per-task protocol (issue 12); the events come from the
  -- same generated helpers as the per-task path's.

  -- complete_task's lock order: the step state, then the task.
  perform 1
  from unnest(p_run_ids, p_step_slugs) with ordinality as e(run_id, step_slug, ord)
  join pgflow.step_states as ss on ss.run_id = e.run_id and ss.step_slug = e.step_slug
  order by e.ord
  for update of ss;

  with e as (
    select *
    from unnest(p_run_ids, p_step_slugs, p_task_indexes, p_outputs)
      as e(run_id, step_slug, task_index, output)
  ),
  done as (
    update pgflow.step_tasks as t
    set status = 'completed',
        completed_at = now(),
        output = e.output
    from e
    where t.run_id = e.run_id
      and t.step_slug = e.step_slug
      and t.task_index = e.task_index
      and t.status = 'started'
    returning t.flow_slug, t.message_id
  )
  select array_agg(d.flow_slug order by d.flow_slug, d.message_id),
    array_agg(d.message_id order by d.flow_slug, d.message_id)
  into archive_flows, archive_ids
  from done as d
  where d.message_id is not null;

  -- Each message archived, one pgmq.archive per queue.
  for v_flow, msg_ids in
    select x.flow_slug, array_agg(x.message_id order by x.message_id)
    from unnest(archive_flows, archive_ids) as x(flow_slug, message_id)
    group by x.flow_slug
    order by x.flow_slug
  loop
    perform pgmq.archive(v_flow, msg_ids);
  end loop;

  -- The step completes with its task's output (remaining_tasks 1 -> 0).
  with e as (
    select *
    from unnest(p_run_ids, p_step_slugs, p_outputs) with ordinality as e(run_id, step_slug, output, ord)
  ),
  completed as (
    update pgflow.step_states as ss
    set remaining_tasks = 0,
        status = 'completed',
        completed_at = now(),
        output = e.output
    from e
    where ss.run_id = e.run_id
      and ss.step_slug = e.step_slug
    returning ss.run_id, ss.step_slug, ss.status, ss.output, ss.completed_at, e.ord
  )
  select coalesce(jsonb_agg(
    jsonb_build_object('ord', c.ord, 'seq', 0)
    || pgflow._event_step_completed(c.run_id, c.step_slug, c.status, c.output, c.completed_at)
  ), '[]'::jsonb)
  into v_events
  from completed as c;

  -- Its dependants wait for one dependency less (none is a map: initial_tasks stays).
  update pgflow.step_states as child_state
  set remaining_deps = child_state.remaining_deps - 1
  from unnest(p_run_ids, p_step_slugs) as e(run_id, step_slug)
  join pgflow.runs as r on r.run_id = e.run_id
  join pgflow.deps as d on d.flow_slug = r.flow_slug and d.dep_slug = e.step_slug
  where child_state.run_id = e.run_id
    and child_state.step_slug = d.step_slug;

  update pgflow.runs as r
  set remaining_steps = r.remaining_steps - 1
  where r.run_id = any(p_run_ids);

  -- start_ready_steps for every run of the batch: the ready steps start, in step_slug
  -- order within a run, runs in entry order.
  with ready as (
    select ss.run_id, ss.step_slug
    from pgflow.step_states as ss
    where ss.run_id = any(p_run_ids)
      and ss.status = 'created'
      and ss.remaining_deps = 0
      and ss.initial_tasks > 0
    for update
  ),
  started as (
    update pgflow.step_states as ss
    set status = 'started',
        started_at = now(),
        remaining_tasks = ss.initial_tasks
    from ready
    where ss.run_id = ready.run_id
      and ss.step_slug = ready.step_slug
    returning ss.*
  ),
  ordered as (
    select
      st.*,
      coalesce(s.opt_start_delay, 0) as delay,
      e.ord,
      row_number() over (order by e.ord, st.step_slug) as nth
    from started as st
    join pgflow.steps as s on s.flow_slug = st.flow_slug and s.step_slug = st.step_slug
    join unnest(p_run_ids) with ordinality as e(run_id, ord) on e.run_id = st.run_id
  )
  select
    array_agg(o.flow_slug order by o.nth),
    array_agg(o.run_id order by o.nth),
    array_agg(o.step_slug order by o.nth),
    array_agg(o.initial_tasks order by o.nth),
    array_agg(o.delay order by o.nth),
    coalesce(jsonb_agg(
      jsonb_build_object('ord', o.ord, 'seq', o.nth)
      || pgflow._event_step_started(
        o.run_id, o.step_slug, o.status, o.started_at, o.remaining_tasks, o.remaining_deps
      )
    ), '[]'::jsonb)
  into st_flow, st_run, st_step, st_tasks, st_delay, v_more
  from ordered as o;
  v_events := v_events || v_more;

  -- Their messages and tasks: one send per stretch of steps sharing a queue and a start
  -- delay, task_index 0..n-1 per step, so message ids ascend as the per-run sends' would.
  m := coalesce(cardinality(st_run), 0);
  while k <= m loop
    l := k;
    while l < m and st_flow[l + 1] = st_flow[k] and st_delay[l + 1] = st_delay[k] loop
      l := l + 1;
    end loop;

    messages := array(
      select jsonb_build_object(
        'flow_slug', st_flow[k],
        'run_id', u.run_id,
        'step_slug', u.step_slug,
        'task_index', i
      )
      from unnest(st_run[k:l], st_step[k:l], st_tasks[k:l]) with ordinality as u(run_id, step_slug, n, ord)
      cross join lateral generate_series(0, u.n - 1) as i
      order by u.ord, i
    );

    select array_agg(sent.msg_id order by sent.ord) into msg_ids
    from pgmq.send_batch(st_flow[k], messages, st_delay[k]) with ordinality as sent(msg_id, ord);

    insert into pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, status, message_id)
    select st_flow[k], x.run_id, x.step_slug, x.i, 'queued', msg_ids[x.nth]
    from (
      select u.run_id, u.step_slug, i, row_number() over (order by u.ord, i) as nth
      from unnest(st_run[k:l], st_step[k:l], st_tasks[k:l]) with ordinality as u(run_id, step_slug, n, ord)
      cross join lateral generate_series(0, u.n - 1) as i
    ) as x;

    k := l + 1;
  end loop;

  -- maybe_complete_run for every run of the batch (its statement, for many runs). Kept as a
  -- copy: maybe_complete_run calling a shared set-based _complete_runs(uuid[]) lowered the
  -- per-task protocol (the alternated bench A/B in bench/README.md, "One copy per effect").
  with completed as (
    update pgflow.runs as r
    set status = 'completed',
        completed_at = now(),
        output = (
          select jsonb_object_agg(ss.step_slug, ss.output)
          from pgflow.step_states as ss
          where ss.run_id = r.run_id
            and ss.status = 'completed'
            and not exists (
              select 1
              from pgflow.deps as d
              where d.flow_slug = ss.flow_slug
                and d.dep_slug = ss.step_slug
            )
        )
    where r.run_id = any(p_run_ids)
      and r.remaining_steps = 0
      and r.status <> 'completed'
    returning r.*
  )
  select coalesce(jsonb_agg(
    jsonb_build_object('ord', e.ord, 'seq', 2147483647)
    || pgflow._event_run_completed(c.run_id, c.flow_slug, c.status, c.output, c.completed_at)
  ), '[]'::jsonb)
  into v_more
  from completed as c
  join unnest(p_run_ids) with ordinality as e(run_id, ord) on e.run_id = c.run_id;
  v_events := v_events || v_more;

  -- Per entry: step:completed, the steps it started, run:completed.
  for ev in
    select x.value
    from jsonb_array_elements(v_events) as x
    order by (x.value ->> 'ord')::bigint, (x.value ->> 'seq')::bigint
  loop
    perform pgflow._broadcast(ev -> 'payload', ev ->> 'event', ev ->> 'topic');
  end loop;

  return query
    select t.*
    from unnest(p_run_ids, p_step_slugs, p_task_indexes) with ordinality as e(run_id, step_slug, task_index, ord)
    join pgflow.step_tasks as t
      on t.run_id = e.run_id
      and t.step_slug = e.step_slug
      and t.task_index = e.task_index
    order by e.ord;
end;
