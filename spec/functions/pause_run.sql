declare
  v_run pgflow.runs;
  v_msg_ids bigint[];
begin
  -- The run row first (as complete_task locks it): steps it makes ready from now on are
  -- queued in a run already marked paused.
  select r.* into v_run
  from pgflow.runs as r
  where r.run_id = pause_run.run_id
  for update;

  if not found then
    raise exception 'Run not found: %', pause_run.run_id;
  end if;

  if v_run.status <> 'started' then
    raise exception 'Run % cannot be paused: it is %', pause_run.run_id, v_run.status;
  end if;

  if v_run.paused_at is not null then
    return v_run;
  end if;

  update pgflow.runs as r
  set paused_at = now()
  where r.run_id = pause_run.run_id
  returning r.* into v_run;

  -- Its queued tasks are locked until the commit: a start_tasks that holds one of them
  -- committed its start before this pause; one that waits for them sees the pause.
  v_msg_ids := pgflow._lock_queued_tasks(v_run.flow_slug, pause_run.run_id, false);

  -- Readable messages are hidden now; those a worker holds or that wait for a retry are
  -- hidden when they are read again (start_tasks).
  perform pgflow._park_messages(v_run.flow_slug, v_msg_ids, 'park_visible');

  perform pgflow._broadcast(
    jsonb_build_object(
      'event_type', 'run:paused',
      'run_id', v_run.run_id,
      'flow_slug', v_run.flow_slug,
      'status', v_run.status,
      'paused_at', v_run.paused_at
    ),
    'run:paused',
    concat('pgflow:run:', v_run.run_id)
  );

  return v_run;
end;
