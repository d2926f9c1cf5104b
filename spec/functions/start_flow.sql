declare
  new_run pgflow.runs;
  input_length integer;
begin
  -- A root map step maps over the flow input, so the input must be an array.
  if exists (
    select 1
    from pgflow.steps as s
    where s.flow_slug = start_flow.flow_slug
      and s.step_type = 'map'
      and s.deps_count = 0
  ) then
    if start_flow.input is null then
      raise exception 'Flow % has root map steps but input is NULL', start_flow.flow_slug;
    end if;
    if jsonb_typeof(start_flow.input) <> 'array' then
      raise exception 'Flow % has root map steps but input is not an array (got %)',
        start_flow.flow_slug, jsonb_typeof(start_flow.input);
    end if;
  end if;

  -- Computed here, not inside the insert's CASE, where the planner would fold
  -- jsonb_array_length over a non-array input and fail even without a root map.
  if jsonb_typeof(start_flow.input) = 'array' then
    input_length := jsonb_array_length(start_flow.input);
  end if;

  -- An unknown flow fails here on runs_flow_slug_fkey, a NULL input on runs.input.
  insert into pgflow.runs (run_id, flow_slug, status, input, remaining_steps)
  values (
    coalesce(start_flow.run_id, gen_random_uuid()),
    start_flow.flow_slug,
    'started',
    start_flow.input,
    (select count(*) from pgflow.steps as s where s.flow_slug = start_flow.flow_slug)
  )
  returning * into new_run;

  -- One state per step. initial_tasks: 1 for a single step, the input's length for a
  -- root map, NULL for a dependent map (known once its dependency completes).
  insert into pgflow.step_states (flow_slug, run_id, step_slug, status, remaining_deps, initial_tasks)
  select
    s.flow_slug,
    new_run.run_id,
    s.step_slug,
    'created',
    s.deps_count,
    case
      when s.step_type = 'map' and s.deps_count = 0 then input_length
      when s.step_type = 'map' then null
      else 1
    end
  from pgflow.steps as s
  where s.flow_slug = new_run.flow_slug;

  perform pgflow._emit_run_started(
    new_run.run_id,
    new_run.flow_slug,
    new_run.input,
    new_run.status,
    new_run.remaining_steps,
    new_run.started_at
  );

  -- false: an unmet condition with when_unmet = 'fail' failed the run.
  if pgflow.cascade_resolve_conditions(new_run.run_id) then
    perform pgflow.cascade_complete_taskless_steps(new_run.run_id);
    perform pgflow.start_ready_steps(new_run.run_id);
    perform pgflow.maybe_complete_run(new_run.run_id);
  end if;

  return query
  select r.*
  from pgflow.runs as r
  where r.run_id = new_run.run_id;
end;
