declare
  v_source pgflow.runs;
  v_run pgflow.runs;
  v_state pgflow.step_states;
  missing_steps text[];
  missing_indexes integer[];
  msg_ids bigint[];
begin
  v_source := pgflow._restart_source(resume_run.run_id);

  -- What the source finished without failing is carried over: its completed and skipped
  -- steps (a step only finishes after its dependencies did, so they are carried too).
  -- Everything else starts afresh.
  insert into pgflow.runs (run_id, flow_slug, status, input, remaining_steps, restart_of_run_id)
  select
    pgflow._uuid_v7(),
    v_source.flow_slug,
    'started',
    v_source.input,
    count(*) filter (where ss.status not in ('completed', 'skipped')),
    v_source.run_id
  from pgflow.step_states as ss
  where ss.run_id = v_source.run_id
  returning * into v_run;

  -- remaining_deps counts the dependencies not carried over; initial_tasks is the
  -- source's (the same input and the same carried outputs give the same counts).
  insert into pgflow.step_states (
    flow_slug, run_id, step_slug, status, remaining_deps, initial_tasks, remaining_tasks,
    output, skip_reason, error_message, started_at, completed_at, skipped_at
  )
  select
    src.flow_slug,
    v_run.run_id,
    src.step_slug,
    case when src.status in ('completed', 'skipped') then src.status else 'created' end,
    (
      select count(*)
      from pgflow.deps as d
      join pgflow.step_states as dep
        on dep.run_id = src.run_id and dep.step_slug = d.dep_slug
      where d.flow_slug = src.flow_slug
        and d.step_slug = src.step_slug
        and dep.status not in ('completed', 'skipped')
    ),
    src.initial_tasks,
    case when src.status = 'completed' then 0 end,
    case when src.status = 'completed' then src.output end,
    case when src.status = 'skipped' then src.skip_reason end,
    case when src.status = 'skipped' then src.error_message end,
    case when src.status = 'completed' then now() end,
    case when src.status = 'completed' then now() end,
    case when src.status = 'skipped' then now() end
  from pgflow.step_states as src
  where src.run_id = v_source.run_id;

  -- Completed tasks are carried over for the completed steps and for unfinished map
  -- steps, so a partially completed map queues only its missing elements.
  insert into pgflow.step_tasks (
    flow_slug, run_id, step_slug, task_index, status, attempts_count, output,
    queued_at, started_at, completed_at
  )
  select t.flow_slug, v_run.run_id, t.step_slug, t.task_index, 'completed', t.attempts_count,
    t.output, now(), now(), now()
  from pgflow.step_tasks as t
  join pgflow.step_states as src on src.run_id = t.run_id and src.step_slug = t.step_slug
  join pgflow.steps as s on s.flow_slug = t.flow_slug and s.step_slug = t.step_slug
  where t.run_id = v_source.run_id
    and t.status = 'completed'
    and (src.status = 'completed' or (s.step_type = 'map' and src.status <> 'skipped'));

  perform pgflow._emit_run_started(
    v_run.run_id,
    v_run.flow_slug,
    v_run.input,
    v_run.status,
    v_run.remaining_steps,
    v_run.started_at
  );

  -- Partially completed maps start at once (they were started in the source, so their
  -- dependencies are carried and their condition held), with their missing elements
  -- only, sent without a start delay (the run goes on where the source stopped).
  for v_state in
    update pgflow.step_states as ss
    set status = 'started',
        started_at = now(),
        remaining_tasks = ss.initial_tasks - c.carried
    from (
      select t.step_slug, count(*)::integer as carried
      from pgflow.step_tasks as t
      where t.run_id = v_run.run_id
      group by t.step_slug
    ) as c
    where ss.run_id = v_run.run_id
      and ss.step_slug = c.step_slug
      and ss.status = 'created'
    returning ss.*
  loop
    perform pgflow._emit_step_started(
      v_state.run_id,
      v_state.step_slug,
      v_state.status,
      v_state.started_at,
      v_state.remaining_tasks,
      v_state.remaining_deps
    );
  end loop;

  -- One send for the missing elements of all of them, in step and element order (a set
  -- difference: hashed, whatever the planner guesses about the rows just inserted).
  select array_agg(m.step_slug order by m.step_slug, m.task_index),
    array_agg(m.task_index order by m.step_slug, m.task_index)
  into missing_steps, missing_indexes
  from (
    select ss.step_slug, i as task_index
    from pgflow.step_states as ss
    cross join lateral generate_series(0, ss.initial_tasks - 1) as i
    where ss.run_id = v_run.run_id
      and ss.status = 'started'
    except
    select t.step_slug, t.task_index
    from pgflow.step_tasks as t
    where t.run_id = v_run.run_id
  ) as m;

  if missing_steps is not null then
    msg_ids := array(
      select sent.msg_id
      from pgmq.send_batch(
        v_run.flow_slug,
        array(
          select jsonb_build_object(
            'flow_slug', v_run.flow_slug,
            'run_id', v_run.run_id,
            'step_slug', m.step_slug,
            'task_index', m.task_index
          )
          from unnest(missing_steps, missing_indexes) with ordinality as m(step_slug, task_index, ord)
          order by m.ord
        ),
        0
      ) with ordinality as sent(msg_id, ord)
      order by sent.ord
    );

    insert into pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, status, message_id)
    select v_run.flow_slug, v_run.run_id, m.step_slug, m.task_index, 'queued', m.msg_id
    from unnest(missing_steps, missing_indexes, msg_ids) as m(step_slug, task_index, msg_id);
  end if;

  -- Then the normal chain, as start_flow runs it.
  if pgflow.cascade_resolve_conditions(v_run.run_id) then
    perform pgflow.cascade_complete_taskless_steps(v_run.run_id);
    perform pgflow.start_ready_steps(v_run.run_id);
    perform pgflow.maybe_complete_run(v_run.run_id);
  end if;

  select r.* into v_run from pgflow.runs as r where r.run_id = v_run.run_id;
  return v_run;
end;
