declare
  step_count integer;
  has_root_map boolean;
  has_conditions boolean;
  bad_found boolean;
  bad_input jsonb;
  new_ids uuid[];
  simple_ids uuid[];
  other_ids uuid[];
  start_delay integer;
  messages jsonb[];
  msg_ids bigint[];
  other_run_id uuid;
begin
  select
    count(*),
    coalesce(bool_or(s.step_type = 'map' and s.deps_count = 0), false),
    coalesce(bool_or(s.required_input_pattern is not null or s.forbidden_input_pattern is not null), false)
  into step_count, has_root_map, has_conditions
  from pgflow.steps as s
  where s.flow_slug = _start_runs.flow_slug;

  -- A root map step maps over the flow input, so every input must be an array; the
  -- first offending input (in the given order) is reported.
  if has_root_map then
    select true, i.input into bad_found, bad_input
    from unnest(_start_runs.inputs) with ordinality as i(input, ord)
    where i.input is null or jsonb_typeof(i.input) <> 'array'
    order by i.ord
    limit 1;
    if bad_found and bad_input is null then
      raise exception 'Flow % has root map steps but input is NULL', _start_runs.flow_slug;
    elsif bad_found then
      raise exception 'Flow % has root map steps but input is not an array (got %)',
        _start_runs.flow_slug, jsonb_typeof(bad_input);
    end if;
  end if;

  new_ids := array(
    select coalesce(i.run_id, pgflow._uuid_v7())
    from unnest(_start_runs.inputs, _start_runs.run_ids) with ordinality as i(input, run_id, ord)
    order by i.ord
  );

  -- An unknown flow fails here on runs_flow_slug_fkey, a NULL input on runs.input.
  insert into pgflow.runs (run_id, flow_slug, status, input, remaining_steps)
  select i.run_id, _start_runs.flow_slug, 'started', i.input, step_count
  from unnest(new_ids, _start_runs.inputs) with ordinality as i(run_id, input, ord)
  order by i.ord;

  -- One state per step and run. initial_tasks: 1 for a single step, the input's length
  -- for a root map, NULL for a dependent map (known once its dependency completes).
  insert into pgflow.step_states (flow_slug, run_id, step_slug, status, remaining_deps, initial_tasks)
  select
    s.flow_slug,
    r.run_id,
    s.step_slug,
    'created',
    s.deps_count,
    case
      when s.step_type = 'map' and s.deps_count = 0 then jsonb_array_length(r.input)
      when s.step_type = 'map' then null
      else 1
    end
  from unnest(new_ids, _start_runs.inputs) with ordinality as r(run_id, input, ord)
  cross join pgflow.steps as s
  where s.flow_slug = _start_runs.flow_slug
  order by r.ord, s.step_index;

  -- The new runs and their states are read back below by probing each run_id
  -- ("cross join lateral (... where x.run_id = u.run_id offset 0)"): "offset 0" keeps the
  -- probe a subquery, so its plan is an index lookup per run. As a plain join, the plan
  -- cached on a young database (no statistics yet) was a hash join over a sequential scan
  -- of runs or step_states, so every start read the whole table (a one-step start went
  -- from 1.5 to 2.6 ms over its first 2,000 runs).

  -- Runs whose start is nothing but queueing their root steps' tasks (no condition to
  -- resolve, no taskless root step, at least one step) start together, set-based; the
  -- others go through the cascades one by one below. Both lists in input order, split
  -- in one pass.
  select
    coalesce(array_agg(r.run_id order by r.ord) filter (where r.simple), '{}'),
    coalesce(array_agg(r.run_id order by r.ord) filter (where not r.simple), '{}')
  into simple_ids, other_ids
  from (
    select u.run_id, u.ord,
      step_count > 0 and not has_conditions
        and (not has_root_map or jsonb_array_length(u.input) > 0) as simple
    from unnest(new_ids, _start_runs.inputs) with ordinality as u(run_id, input, ord)
  ) as r;

  if cardinality(simple_ids) > 0 then
    update pgflow.step_states as ss
    set status = 'started',
        started_at = now(),
        remaining_tasks = ss.initial_tasks
    where ss.run_id = any(simple_ids)
      and ss.status = 'created'
      and ss.remaining_deps = 0;

    -- One send per start delay (it applies to this first send only), the messages in the
    -- order run, step, task_index, so message ids ascend with task_index.
    for start_delay in
      select distinct coalesce(s.opt_start_delay, 0)
      from pgflow.steps as s
      where s.flow_slug = _start_runs.flow_slug
        and s.deps_count = 0
    loop
      messages := array(
        select jsonb_build_object(
          'flow_slug', _start_runs.flow_slug,
          'run_id', ss.run_id,
          'step_slug', ss.step_slug,
          'task_index', i.task_index
        )
        from unnest(simple_ids) with ordinality as u(run_id, ord)
        cross join lateral (
          select x.* from pgflow.step_states as x where x.run_id = u.run_id offset 0
        ) as ss
        join pgflow.steps as s
          on s.flow_slug = ss.flow_slug
         and s.step_slug = ss.step_slug
         and coalesce(s.opt_start_delay, 0) = start_delay
        cross join lateral generate_series(0, ss.initial_tasks - 1) as i(task_index)
        where ss.status = 'started'
        order by u.ord, ss.step_slug, i.task_index
      );

      if cardinality(messages) > 0 then
        msg_ids := array(
          select sent.msg_id
          from pgmq.send_batch(_start_runs.flow_slug, messages, start_delay)
            with ordinality as sent(msg_id, ord)
          order by sent.ord
        );

        insert into pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, status, message_id)
        select _start_runs.flow_slug, (m.message ->> 'run_id')::uuid, m.message ->> 'step_slug',
          (m.message ->> 'task_index')::integer, 'queued', m.msg_id
        from unnest(messages, msg_ids) as m(message, msg_id);
      end if;
    end loop;
  end if;

  -- Events, in one statement (its sorted subquery fixes the order of the calls): each
  -- run's run:started in input order, followed by the step:started of the runs started
  -- above (by step_slug, as start_ready_steps sends them; the other runs have no started
  -- step yet).
  perform pgflow._broadcast(e.ev -> 'payload', e.ev ->> 'event', e.ev ->> 'topic')
  from (
    select u.ord, 0 as kind, '' as step_slug,
      pgflow._event_run_started(
        r.run_id, r.flow_slug, r.input, r.status, r.remaining_steps, r.started_at
      ) as ev
    from unnest(new_ids) with ordinality as u(run_id, ord)
    cross join lateral (
      select x.* from pgflow.runs as x where x.run_id = u.run_id offset 0
    ) as r
    union all
    select u.ord, 1, ss.step_slug,
      pgflow._event_step_started(
        ss.run_id, ss.step_slug, ss.status, ss.started_at, ss.remaining_tasks, ss.remaining_deps
      )
    from unnest(new_ids) with ordinality as u(run_id, ord)
    cross join lateral (
      select x.* from pgflow.step_states as x where x.run_id = u.run_id offset 0
    ) as ss
    where ss.status = 'started'
    order by 1, 2, 3
  ) as e;

  -- The other runs, one by one in input order.
  foreach other_run_id in array other_ids
  loop
    -- false: an unmet condition with when_unmet = 'fail' failed the run.
    if pgflow.cascade_resolve_conditions(other_run_id) then
      perform pgflow.cascade_complete_taskless_steps(other_run_id);
      perform pgflow.start_ready_steps(other_run_id);
      perform pgflow.maybe_complete_run(other_run_id);
    end if;
  end loop;

  return query
  select r.*
  from unnest(new_ids) with ordinality as u(run_id, ord)
  cross join lateral (
    select x.* from pgflow.runs as x where x.run_id = u.run_id offset 0
  ) as r
  order by u.ord;
end;
