declare
  v_flow pgflow.flows;
  v_msg_ids bigint[];
begin
  select f.* into v_flow
  from pgflow.flows as f
  where f.flow_slug = unpause_flow.flow_slug
  for update;

  if not found then
    raise exception 'Flow not found: %', unpause_flow.flow_slug;
  end if;

  if v_flow.paused_at is null then
    return v_flow;
  end if;

  update pgflow.flows as f
  set paused_at = null
  where f.flow_slug = unpause_flow.flow_slug
  returning f.* into v_flow;

  -- As unpause_run, for every run of the flow that is not paused itself.
  v_msg_ids := pgflow._lock_queued_tasks(unpause_flow.flow_slug, null, true);
  perform pgflow._park_messages(unpause_flow.flow_slug, v_msg_ids, 'unpark');

  perform pgflow._broadcast(
    jsonb_build_object(
      'event_type', 'flow:unpaused',
      'flow_slug', v_flow.flow_slug,
      'unpaused_at', now()
    ),
    'flow:unpaused',
    concat('pgflow:flow:', v_flow.flow_slug)
  );

  return v_flow;
end;
