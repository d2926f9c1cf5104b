declare
  v_run pgflow.runs;
  v_msg_ids bigint[];
begin
  select r.* into v_run
  from pgflow.runs as r
  where r.run_id = unpause_run.run_id
  for update;

  if not found then
    raise exception 'Run not found: %', unpause_run.run_id;
  end if;

  if v_run.paused_at is null then
    return v_run;
  end if;

  update pgflow.runs as r
  set paused_at = null
  where r.run_id = unpause_run.run_id
  returning r.* into v_run;

  -- Locking the queued tasks waits for a start_tasks that is parking one of their
  -- messages right now, so no message stays parked after the unpause.
  v_msg_ids := pgflow._lock_queued_tasks(v_run.flow_slug, unpause_run.run_id, false);

  -- A paused flow keeps them parked (unpause_flow shows them).
  if not exists (
    select 1 from pgflow.flows as f
    where f.flow_slug = v_run.flow_slug and f.paused_at is not null
  ) then
    perform pgflow._park_messages(v_run.flow_slug, v_msg_ids, 'unpark');
  end if;

  perform pgflow._broadcast(
    jsonb_build_object(
      'event_type', 'run:unpaused',
      'run_id', v_run.run_id,
      'flow_slug', v_run.flow_slug,
      'status', v_run.status,
      'unpaused_at', now()
    ),
    'run:unpaused',
    concat('pgflow:run:', v_run.run_id)
  );

  return v_run;
end;
