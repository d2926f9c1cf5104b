declare
  held_msg_ids bigint[];
begin
  -- The caller holds the locks of these task rows. Tasks of a paused run stay queued;
  -- their messages, which the worker has just read, are parked until unpause.
  select array_agg(t.message_id) filter (where t.message_id is not null)
  into held_msg_ids
  from unnest(p_run_ids, p_step_slugs, p_task_indexes) as k(run_id, step_slug, task_index)
  join pgflow.step_tasks as t
    on t.run_id = k.run_id and t.step_slug = k.step_slug and t.task_index = k.task_index
  where k.run_id = any(p_paused_runs);

  perform pgflow._park_messages(p_flow_slug, held_msg_ids, 'park');

  return query
    select
      array_agg(k.run_id order by k.ord),
      array_agg(k.step_slug order by k.ord),
      array_agg(k.task_index order by k.ord)
    from unnest(p_run_ids, p_step_slugs, p_task_indexes) with ordinality as k(run_id, step_slug, task_index, ord)
    where k.run_id <> all(p_paused_runs);
end;
