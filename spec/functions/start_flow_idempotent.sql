declare
  v_run pgflow.runs;
  v_new_run_id uuid;
begin
  if start_flow_idempotent.idempotency_key is null and start_flow_idempotent.run_id is null then
    raise exception 'start_flow_idempotent needs an idempotency_key or a run_id';
  end if;

  -- Callers with the same key (or run id) queue up here, so the second one finds the
  -- run the first one started (a new statement sees its commit).
  perform pg_advisory_xact_lock(
    hashtextextended(
      coalesce('key:' || start_flow_idempotent.idempotency_key, 'run:' || start_flow_idempotent.run_id::text),
      7413
    )
  );

  select r.* into v_run
  from pgflow.runs as r
  where r.idempotency_key = start_flow_idempotent.idempotency_key
     or r.run_id = start_flow_idempotent.run_id
  order by (r.idempotency_key = start_flow_idempotent.idempotency_key) desc nulls last
  limit 1;

  if found then
    if v_run.flow_slug is distinct from start_flow_idempotent.flow_slug
      or v_run.input is distinct from start_flow_idempotent.input
      or (start_flow_idempotent.run_id is not null and v_run.run_id <> start_flow_idempotent.run_id)
      or v_run.idempotency_key is distinct from start_flow_idempotent.idempotency_key
    then
      raise exception 'Run % (flow %) already exists for this idempotency key or run id with another flow, input, key or run id',
        v_run.run_id, v_run.flow_slug;
    end if;
    return v_run;
  end if;

  select r.run_id into v_new_run_id
  from pgflow.start_flow(
    start_flow_idempotent.flow_slug,
    start_flow_idempotent.input,
    start_flow_idempotent.run_id
  ) as r;

  update pgflow.runs as r
  set idempotency_key = start_flow_idempotent.idempotency_key
  where r.run_id = v_new_run_id
  returning r.* into v_run;

  return v_run;
end;
