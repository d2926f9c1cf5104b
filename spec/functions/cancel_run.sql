declare
  v_run pgflow.runs;
begin
  -- The run row first, as complete_task, fail_task and complete_tasks lock it: a
  -- completion or failure of this run either commits before the cancellation (and is
  -- kept) or runs after it and finds the run cancelled (and changes nothing).
  select r.* into v_run
  from pgflow.runs as r
  where r.run_id = cancel_run.run_id
  for update;

  if not found then
    raise exception 'Run not found: %', cancel_run.run_id;
  end if;

  if v_run.status = 'cancelled' then
    -- Idempotent: nothing changes, no second event.
    return v_run;
  end if;

  if v_run.status <> 'started' then
    raise exception 'Run % cannot be cancelled: it is %', cancel_run.run_id, v_run.status;
  end if;

  update pgflow.runs as r
  set status = 'cancelled',
      cancelled_at = now(),
      cancel_reason = cancel_run.reason
  where r.run_id = cancel_run.run_id
  returning r.* into v_run;

  -- Unfinished steps end cancelled (their counters stay as they were).
  update pgflow.step_states as ss
  set status = 'cancelled'
  where ss.run_id = cancel_run.run_id
    and ss.status in ('created', 'started');

  -- Queued and started tasks end cancelled and their messages are archived (task rows
  -- before queue rows, the order start_tasks locks them in).
  perform pgflow._cancel_run_tasks(cancel_run.run_id);

  perform pgflow._emit_run_cancelled(
    v_run.run_id,
    v_run.flow_slug,
    v_run.status,
    v_run.cancel_reason,
    v_run.cancelled_at
  );

  return v_run;
end;
