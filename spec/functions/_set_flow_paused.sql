declare
  v_flow pgflow.flows;
  v_msg_ids bigint[];
begin
  select f.* into v_flow
  from pgflow.flows as f
  where f.flow_slug = p_flow_slug
  for update;

  if not found then
    raise exception 'Flow not found: %', p_flow_slug;
  end if;

  if (v_flow.paused_at is not null) = p_paused then
    return v_flow;
  end if;

  update pgflow.flows as f
  set paused_at = case when p_paused then now() end
  where f.flow_slug = p_flow_slug
  returning f.* into v_flow;

  if p_paused then
    -- Its started runs are locked (in run_id order, as complete_tasks locks runs), so a
    -- completion queueing new tasks commits before this pause, whose next statement
    -- sees them, or after it; then their queued tasks, as pause_run locks a run's.
    perform 1
    from pgflow.runs as r
    where r.flow_slug = p_flow_slug
      and r.status = 'started'
    order by r.run_id
    for update;
    v_msg_ids := pgflow._lock_queued_tasks(p_flow_slug, null, false);
    perform pgflow._park_messages(p_flow_slug, v_msg_ids, 'park_visible');
  else
    -- As unpause_run, for every run of the flow that is not paused itself.
    v_msg_ids := pgflow._lock_queued_tasks(p_flow_slug, null, true);
    perform pgflow._park_messages(p_flow_slug, v_msg_ids, 'unpark');
  end if;

  if p_paused then
    perform pgflow._emit_flow_paused(v_flow.flow_slug, v_flow.paused_at);
  else
    perform pgflow._emit_flow_unpaused(v_flow.flow_slug, now());
  end if;

  return v_flow;
end;
