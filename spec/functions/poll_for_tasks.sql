begin
  -- Removed in pgflow 0.8: polling is two-phase now. Kept so old callers get a hint.
  raise notice 'pgflow.poll_for_tasks is deprecated and returns no tasks: read messages with pgmq.read_with_poll, then start them with pgflow.start_tasks';
  return;
end;
