declare
  v_run pgflow.runs;
  v_msg_ids bigint[];
begin
  -- The run row first (as complete_task locks it): steps it makes ready from now on are
  -- queued in a run already marked (un)paused.
  select r.* into v_run
  from pgflow.runs as r
  where r.run_id = p_run_id
  for update;

  if not found then
    raise exception 'Run not found: %', p_run_id;
  end if;

  if p_paused and v_run.status <> 'started' then
    raise exception 'Run % cannot be paused: it is %', p_run_id, v_run.status;
  end if;

  if (v_run.paused_at is not null) = p_paused then
    -- Already so: nothing changes, no event.
    return v_run;
  end if;

  update pgflow.runs as r
  set paused_at = case when p_paused then now() end
  where r.run_id = p_run_id
  returning r.* into v_run;

  -- The run's queued tasks stay locked until the commit: a start_tasks holding one of
  -- them started it before this change commits; one waiting for them sees the change.
  v_msg_ids := pgflow._lock_queued_tasks(v_run.flow_slug, p_run_id, false);

  if p_paused then
    -- Readable messages are hidden now; those a worker holds or that wait for a retry
    -- are hidden when they are read again (start_tasks).
    perform pgflow._park_messages(v_run.flow_slug, v_msg_ids, 'park_visible');
  elsif not exists (
    select 1 from pgflow.flows as f
    where f.flow_slug = v_run.flow_slug and f.paused_at is not null
  ) then
    -- A paused flow keeps them parked (unpause_flow shows them).
    perform pgflow._park_messages(v_run.flow_slug, v_msg_ids, 'unpark');
  end if;

  if p_paused then
    perform pgflow._emit_run_paused(v_run.run_id, v_run.flow_slug, v_run.status, v_run.paused_at);
  else
    perform pgflow._emit_run_unpaused(v_run.run_id, v_run.flow_slug, v_run.status, now());
  end if;

  return v_run;
end;
