declare
  v_run pgflow.runs;
  v_step_status text;
begin
  -- Lock order: the run, then the step state. Sibling tasks reporting at the same time
  -- queue up on the run row, so exactly one of them sees remaining_tasks reach 0.
  select r.* into v_run
  from pgflow.runs as r
  where r.run_id = _take_task_callback.run_id
  for update;

  -- A failed (or cancelled: cancel_run) run takes no more results. A failure still fails
  -- a running task and archives its message whatever the task's status (a cancelled
  -- run has no running task left and its messages are archived: nothing changes).
  if v_run.status in ('failed', 'cancelled') then
    if failing then
      update pgflow.step_tasks as t
      set status = 'failed',
          failed_at = now(),
          error_message = _take_task_callback.error_message
      where t.run_id = _take_task_callback.run_id
        and t.step_slug = _take_task_callback.step_slug
        and t.task_index = _take_task_callback.task_index
        and t.status = 'started';
      perform pgflow._archive_task_message(
        _take_task_callback.run_id, _take_task_callback.step_slug, _take_task_callback.task_index
      );
    end if;
    return null;
  end if;

  select ss.status into v_step_status
  from pgflow.step_states as ss
  where ss.run_id = _take_task_callback.run_id
    and ss.step_slug = _take_task_callback.step_slug
  for update;

  -- Late callback: the step already completed, failed or was skipped.
  if v_step_status is distinct from 'started' then
    perform pgflow._archive_task_message(
      _take_task_callback.run_id, _take_task_callback.step_slug, _take_task_callback.task_index
    );
    return null;
  end if;

  return v_run;
end;
