-- The engine's public functions run as the owner, who may read every pgmq queue: they
-- read a queue by this name only, so a caller reaches the queues of flows and no other.
-- An unknown flow fails as pgmq does for a missing queue.
begin
  if not exists (select 1 from pgflow.flows as f where f.flow_slug = _queue_of_flow.flow_slug) then
    raise exception using
      errcode = '42P01',
      message = format('relation "pgmq.q_%s" does not exist', lower(_queue_of_flow.flow_slug));
  end if;
  return _queue_of_flow.flow_slug;
end;
