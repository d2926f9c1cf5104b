begin
  -- The read commits (or not) together with the start: a message is never left read but
  -- not started by a worker that dies between the two phases.
  return query
    select started.*
    from pgflow.start_tasks(
      read_and_start_tasks.flow_slug,
      array(
        select m.msg_id
        from pgmq.read(
          read_and_start_tasks.flow_slug,
          read_and_start_tasks.vt,
          read_and_start_tasks.qty
        ) as m
      ),
      read_and_start_tasks.worker_id
    ) as started;
end;
