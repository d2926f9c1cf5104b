declare
  cap constant integer := 3600;
  v_flow_slug text;
  v_before text;
  v_task pgflow.step_tasks;
begin
  -- Refused before anything changes.
  if fail_task_with_details.retry_delay is not null
    and (
      fail_task_with_details.retry_delay = 'NaN'::numeric
      or fail_task_with_details.retry_delay < 0
      or fail_task_with_details.retry_delay > cap
    )
  then
    raise exception 'retry_delay must be a finite number of seconds from 0 to % (got %)',
      cap, fail_task_with_details.retry_delay
      using errcode = '22023';
  end if;

  -- fail_task's lock order (the run first), so the task's status read here is the one
  -- fail_task acts on.
  select r.flow_slug into v_flow_slug
  from pgflow.runs as r
  where r.run_id = fail_task_with_details.run_id
  for update;

  select t.status into v_before
  from pgflow.step_tasks as t
  where t.run_id = fail_task_with_details.run_id
    and t.step_slug = fail_task_with_details.step_slug
    and t.task_index = fail_task_with_details.task_index;

  select f.* into v_task
  from pgflow.fail_task(
    fail_task_with_details.run_id,
    fail_task_with_details.step_slug,
    fail_task_with_details.task_index,
    fail_task_with_details.error_message
  ) as f;

  if v_before = 'started' and v_task.status in ('queued', 'failed') then
    -- This call failed the started task: it keeps the details.
    update pgflow.step_tasks as t
    set error_type = fail_task_with_details.error_type,
        error_traceback = right(fail_task_with_details.error_traceback, 8000)
    where t.run_id = fail_task_with_details.run_id
      and t.step_slug = fail_task_with_details.step_slug
      and t.task_index = fail_task_with_details.task_index
    returning t.* into v_task;

    -- Retried: the handler's delay instead of the backoff fail_task set.
    if v_task.status = 'queued' and fail_task_with_details.retry_delay is not null then
      execute format(
        'update pgmq.%I as q set vt = clock_timestamp() + make_interval(secs => $2) where q.msg_id = $1',
        pgmq.format_table_name(v_flow_slug, 'q')
      )
      using v_task.message_id, fail_task_with_details.retry_delay;
    end if;
  end if;

  return query
    select t.* from pgflow.step_tasks as t
    where t.run_id = fail_task_with_details.run_id
      and t.step_slug = fail_task_with_details.step_slug
      and t.task_index = fail_task_with_details.task_index;
end;
