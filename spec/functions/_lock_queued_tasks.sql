declare
  v_msg_ids bigint[];
begin
  -- Locked until the caller commits, in message id order as start_tasks locks them, so
  -- the two wait for each other instead of deadlocking.
  select array_agg(t.message_id order by t.message_id)
    filter (where t.message_id is not null and (not p_unpaused_runs_only or not t.run_paused))
  into v_msg_ids
  from (
    select t.message_id, r.paused_at is not null as run_paused
    from pgflow.step_tasks as t
    join pgflow.runs as r on r.run_id = t.run_id
    where t.flow_slug = p_flow_slug
      and (p_run_id is null or t.run_id = p_run_id)
      and t.status = 'queued'
    order by t.message_id
    for update of t
  ) as t;

  return v_msg_ids;
end;
