begin
  -- The queue first, but only when pgmq lists it: a queue dropped earlier (or a slug that
  -- never was a queue name, however odd its characters) must not make this fail.
  if exists (
    select 1 from pgmq.list_queues() as q where q.queue_name = delete_flow_and_data.p_flow_slug
  ) then
    perform pgmq.drop_queue(delete_flow_and_data.p_flow_slug);
  end if;

  -- Then the rows, children before parents (the foreign keys do not cascade).
  delete from pgflow.step_tasks as t where t.flow_slug = delete_flow_and_data.p_flow_slug;
  delete from pgflow.step_states as ss where ss.flow_slug = delete_flow_and_data.p_flow_slug;
  delete from pgflow.runs as r where r.flow_slug = delete_flow_and_data.p_flow_slug;
  delete from pgflow.deps as d where d.flow_slug = delete_flow_and_data.p_flow_slug;
  delete from pgflow.steps as s where s.flow_slug = delete_flow_and_data.p_flow_slug;
  delete from pgflow.flows as f where f.flow_slug = delete_flow_and_data.p_flow_slug;
end;
