declare
  run_flow_slug text;
  run_status text;
  step record;
  msg_ids bigint[];
  messages jsonb[];
begin
  -- By run_id alone (the status is checked apart): beside run_id, "status = 'started'"
  -- lets a plan cached on a young database with no statistics yet pick idx_runs_status
  -- and walk every started run on each call.
  select r.flow_slug, r.status into run_flow_slug, run_status
  from pgflow.runs as r
  where r.run_id = start_ready_steps.run_id;
  if run_status is distinct from 'started' then
    -- Unknown or terminal run: nothing to start.
    return;
  end if;

  for step in
    with ready as (
      select ss.step_slug
      from pgflow.step_states as ss
      where ss.run_id = start_ready_steps.run_id
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
      where ss.run_id = start_ready_steps.run_id
        and ss.step_slug = ready.step_slug
      returning ss.*
    )
    select started.*, s.opt_start_delay
    from started
    join pgflow.steps as s on s.flow_slug = started.flow_slug and s.step_slug = started.step_slug
    order by started.step_slug
  loop
    perform pgflow._emit_step_started(
      step.run_id,
      step.step_slug,
      step.status,
      step.started_at,
      step.remaining_tasks,
      step.remaining_deps
    );

    -- One batch per step, task_index 0..n-1 in order, so message ids ascend with
    -- task_index. The start delay applies to this first send only.
    -- (The messages are built apart from the send, and a single task's without a
    -- query, so the send's plan is cached instead of planned for every step.)
    if step.initial_tasks = 1 then
      messages := array[jsonb_build_object(
        'flow_slug', run_flow_slug,
        'run_id', step.run_id,
        'step_slug', step.step_slug,
        'task_index', 0
      )];
    else
      messages := array(
        select jsonb_build_object(
          'flow_slug', run_flow_slug,
          'run_id', step.run_id,
          'step_slug', step.step_slug,
          'task_index', i
        )
        from generate_series(0, step.initial_tasks - 1) as i
        order by i
      );
    end if;

    select array_agg(sent.msg_id order by sent.ord) into msg_ids
    from pgmq.send_batch(run_flow_slug, messages, coalesce(step.opt_start_delay, 0))
      with ordinality as sent(msg_id, ord);

    insert into pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, status, message_id)
    select run_flow_slug, step.run_id, step.step_slug, (m.ord - 1)::integer, 'queued', m.msg_id
    from unnest(msg_ids) with ordinality as m(msg_id, ord);
  end loop;
end;
