declare
  cancelled_count integer;
  run_flow_slug text;
  message_ids bigint[];
begin
  -- The run failed: no unfinished task of it may run any more. pgflow 0.14.1 leaves
  -- these tasks queued/started forever; they end cancelled here.
  -- Task rows first, queue rows second: the same lock order as start_tasks, so a worker
  -- starting one of these tasks at the same moment waits instead of deadlocking.
  with cancelled as (
    update pgflow.step_tasks as t
    set status = 'cancelled'
    where t.run_id = _cancel_run_tasks.p_run_id
      and t.status in ('queued', 'started')
    returning t.flow_slug, t.message_id
  )
  select
    count(*),
    min(c.flow_slug),
    array_agg(c.message_id) filter (where c.message_id is not null)
  into cancelled_count, run_flow_slug, message_ids
  from cancelled as c;

  if message_ids is not null then
    perform pgmq.archive(run_flow_slug, message_ids);
  end if;

  return cancelled_count;
end;
