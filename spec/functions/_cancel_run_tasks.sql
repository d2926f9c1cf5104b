declare
  cancelled integer;
begin
  -- The run failed: no unfinished task of it may run any more.
  perform pgmq.archive(t.flow_slug, array_agg(t.message_id))
  from pgflow.step_tasks as t
  where t.run_id = _cancel_run_tasks.p_run_id
    and t.status in ('queued', 'started')
    and t.message_id is not null
  group by t.flow_slug;

  -- pgflow 0.14.1 leaves these tasks queued/started forever; they end cancelled here.
  update pgflow.step_tasks as t
  set status = 'cancelled'
  where t.run_id = _cancel_run_tasks.p_run_id
    and t.status in ('queued', 'started');
  get diagnostics cancelled = row_count;

  return cancelled;
end;
