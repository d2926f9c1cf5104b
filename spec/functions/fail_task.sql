declare
  v_run pgflow.runs;
  v_state pgflow.step_states;
  v_task pgflow.step_tasks;
  v_max_attempts integer;
  v_base_delay integer;
  v_when_exhausted text;
  v_skipped_msg_ids bigint[];
begin
  -- Every path ends with the task row (exit callback: nothing more to do).
  <<callback>>
  begin
    -- 1-2. The run and the step state locked (as complete_task). The run already failed: a
    -- still running task fails too, its message goes away whatever the task's status (a
    -- cancelled run has no running task left: nothing changes); a step no longer started
    -- (late callback): its message is archived. Either way the task row is returned.
    v_run := pgflow._take_task_callback(
      fail_task.run_id, fail_task.step_slug, fail_task.task_index, true, fail_task.error_message
    );
    if v_run.run_id is null then
      exit callback;
    end if;

    select
      coalesce(s.opt_max_attempts, f.opt_max_attempts),
      coalesce(s.opt_base_delay, f.opt_base_delay),
      s.when_exhausted
    into v_max_attempts, v_base_delay, v_when_exhausted
    from pgflow.steps as s
    join pgflow.flows as f on f.flow_slug = s.flow_slug
    where s.flow_slug = v_run.flow_slug
      and s.step_slug = fail_task.step_slug;

    -- 3. Only a started task changes. attempts_count already counts the current attempt
    -- (start_tasks incremented it) and max_attempts counts the first one, so 0 and 1 both
    -- mean no retry.
    update pgflow.step_tasks as t
    set status = case when t.attempts_count < v_max_attempts then 'queued' else 'failed' end,
        started_at = case when t.attempts_count < v_max_attempts then null else t.started_at end,
        failed_at = case when t.attempts_count < v_max_attempts then null else now() end,
        error_message = fail_task.error_message
    where t.run_id = fail_task.run_id
      and t.step_slug = fail_task.step_slug
      and t.task_index = fail_task.task_index
      and t.status = 'started'
    returning t.* into v_task;

    if not found then
      -- A finished task: nothing changes. A queued one keeps its row too, but its message
      -- is put back by the backoff of the attempts it has had (base_delay when it never
      -- started), as pgflow does.
      perform pgmq.set_vt(
        v_run.flow_slug,
        t.message_id,
        pgflow.calculate_retry_delay(v_base_delay, t.attempts_count)
      )
      from pgflow.step_tasks as t
      where t.run_id = fail_task.run_id
        and t.step_slug = fail_task.step_slug
        and t.task_index = fail_task.task_index
        and t.status = 'queued'
        and t.message_id is not null;
      exit callback;
    end if;

    if v_task.status = 'queued' then
      -- 5. Retry after an exponential backoff (capped by calculate_retry_delay): the first
      -- retry waits 2 x base_delay, then 4x, 8x...
      perform pgmq.set_vt(
        v_run.flow_slug,
        v_task.message_id,
        pgflow.calculate_retry_delay(v_base_delay, v_task.attempts_count)
      );
      return next v_task;
      return;
    end if;

    -- 4. Out of attempts.
    if v_when_exhausted = 'fail' then
      -- The step and the run fail, announced in that order (an unmet condition with
      -- when_unmet=fail does the same). complete_task's type violation fails both
      -- without this function: pgflow announces run:failed first there, without
      -- error_message.
      perform pgflow._fail_step_and_run(fail_task.run_id, fail_task.step_slug, fail_task.error_message);
    else
      -- skip / skip-cascade: the step is skipped with the handler's error and the run goes
      -- on without it. Its other unfinished tasks are skipped and their messages archived.
      update pgflow.step_states as ss
      set status = 'skipped',
          skip_reason = 'handler_failed',
          skipped_at = now(),
          error_message = fail_task.error_message,
          remaining_tasks = null
      where ss.run_id = fail_task.run_id
        and ss.step_slug = fail_task.step_slug
      returning ss.* into v_state;

      update pgflow.runs as r
      set remaining_steps = r.remaining_steps - 1
      where r.run_id = fail_task.run_id;

      -- Tasks first, messages second: the order start_tasks takes the same locks in.
      with skipped as (
        update pgflow.step_tasks as t
        set status = 'skipped'
        where t.run_id = fail_task.run_id
          and t.step_slug = fail_task.step_slug
          and t.status in ('queued', 'started')
        returning t.message_id
      )
      select array_agg(skipped.message_id) into v_skipped_msg_ids
      from skipped
      where skipped.message_id is not null;

      if v_skipped_msg_ids is not null then
        perform pgmq.archive(v_run.flow_slug, v_skipped_msg_ids);
      end if;

      perform pgflow._emit_step_skipped_with_error(
        v_state.run_id,
        v_state.step_slug,
        v_state.status,
        v_state.skip_reason,
        v_state.skipped_at,
        v_state.error_message
      );

      if v_when_exhausted = 'skip-cascade' then
        -- The step itself is already skipped, so this skips (and announces) only its
        -- downstream steps, with dependency_skipped.
        perform pgflow._cascade_force_skip_steps(fail_task.run_id, fail_task.step_slug, 'handler_failed');
      else
        -- Plain skip: children stop waiting for this step; a map child mapping over it gets
        -- no elements, a single child runs without it in its input.
        update pgflow.step_states as child_state
        set remaining_deps = child_state.remaining_deps - 1,
            initial_tasks = case
              when child.step_type = 'map' and child.deps_count = 1 then 0
              else child_state.initial_tasks
            end
        from pgflow.deps as d
        join pgflow.steps as child
          on child.flow_slug = d.flow_slug and child.step_slug = d.step_slug
        where d.flow_slug = v_run.flow_slug
          and d.dep_slug = fail_task.step_slug
          and child_state.run_id = fail_task.run_id
          and child_state.step_slug = d.step_slug;

        if not pgflow.cascade_resolve_conditions(fail_task.run_id) then
          perform pgflow._archive_task_message(fail_task.run_id, fail_task.step_slug, fail_task.task_index);
          exit callback;
        end if;

        perform pgflow.cascade_complete_taskless_steps(fail_task.run_id);
        perform pgflow.start_ready_steps(fail_task.run_id);
      end if;

      perform pgflow.maybe_complete_run(fail_task.run_id);
    end if;

    -- 5. The failed task's message leaves the queue.
    perform pgflow._archive_task_message(fail_task.run_id, fail_task.step_slug, fail_task.task_index);
  end;

  return query
    select t.* from pgflow.step_tasks as t
    where t.run_id = fail_task.run_id
      and t.step_slug = fail_task.step_slug
      and t.task_index = fail_task.task_index;
end;
