declare
  v_msg_ids bigint[];
begin
  -- The read commits (or not) together with the start: a message is never left read but
  -- not started by a worker that dies between the two phases.
  v_msg_ids := array(
    select m.msg_id
    from pgmq.read(
      pgflow._queue_of_flow(read_and_start_tasks.flow_slug),
      read_and_start_tasks.vt,
      read_and_start_tasks.qty
    ) as m
  );

  -- Then what start_tasks does with them, except that a task row another transaction
  -- holds is skipped rather than waited for (see _start_tasks).
  return query
    select *
    from pgflow._start_tasks(
      read_and_start_tasks.flow_slug,
      v_msg_ids,
      read_and_start_tasks.worker_id,
      true
    );
end;
