-- Only the queues of flows: running as the owner, this must not read other pgmq queues.
-- An unknown flow fails as pgmq.read_with_poll does for a missing queue.
begin
  if not exists (select 1 from pgflow.flows as f where f.flow_slug = poll_messages.flow_slug) then
    raise exception using
      errcode = '42P01',
      message = format('relation "pgmq.q_%s" does not exist', lower(poll_messages.flow_slug));
  end if;
  return query
    select m.msg_id
    from pgmq.read_with_poll(
      poll_messages.flow_slug,
      poll_messages.vt,
      poll_messages.qty,
      poll_messages.max_poll_seconds,
      poll_messages.poll_interval_ms
    ) as m;
end;
