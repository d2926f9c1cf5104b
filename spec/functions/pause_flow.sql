declare
  v_flow pgflow.flows;
  v_msg_ids bigint[];
begin
  select f.* into v_flow
  from pgflow.flows as f
  where f.flow_slug = pause_flow.flow_slug
  for update;

  if not found then
    raise exception 'Flow not found: %', pause_flow.flow_slug;
  end if;

  if v_flow.paused_at is not null then
    return v_flow;
  end if;

  update pgflow.flows as f
  set paused_at = now()
  where f.flow_slug = pause_flow.flow_slug
  returning f.* into v_flow;

  -- Its started runs are locked (in run_id order, as complete_tasks locks runs), so a
  -- completion queueing new tasks commits before this pause, whose next statement sees
  -- them, or after it; then their queued tasks, as pause_run locks a run's.
  perform 1
  from pgflow.runs as r
  where r.flow_slug = pause_flow.flow_slug
    and r.status = 'started'
  order by r.run_id
  for update;

  v_msg_ids := pgflow._lock_queued_tasks(pause_flow.flow_slug, null, false);
  perform pgflow._park_messages(pause_flow.flow_slug, v_msg_ids, 'park_visible');

  perform pgflow._broadcast(
    jsonb_build_object(
      'event_type', 'flow:paused',
      'flow_slug', v_flow.flow_slug,
      'paused_at', v_flow.paused_at
    ),
    'flow:paused',
    concat('pgflow:flow:', v_flow.flow_slug)
  );

  return v_flow;
end;
