declare
  v_run pgflow.runs;
  v_state pgflow.step_states;
  v_step pgflow.steps;
  v_map_child text;
  v_produced text;
  v_child_tasks integer;
  v_task_flow_slug text;
  v_message_id bigint;
begin
  -- Every path ends with the task row (exit callback: nothing more to do).
  <<callback>>
  begin
    -- 1-2. The run and the step state locked; a failed or cancelled run (the task row is
    -- returned unchanged) or a step no longer started (late callback: its message is
    -- archived) ends here.
    v_run := pgflow._take_task_callback(
      complete_task.run_id, complete_task.step_slug, complete_task.task_index, false, null
    );
    if v_run.run_id is null then
      exit callback;
    end if;

    select s.* into v_step
    from pgflow.steps as s
    where s.flow_slug = v_run.flow_slug
      and s.step_slug = complete_task.step_slug;

    -- 3. Type violation: a single step feeding a map that still waits for its array must
    -- produce an array. A map parent is never checked (its output is always an array).
    if v_step.step_type = 'single'
      and (complete_task.output is null or jsonb_typeof(complete_task.output) <> 'array')
    then
      select child.step_slug into v_map_child
      from pgflow.deps as d
      join pgflow.steps as child
        on child.flow_slug = d.flow_slug and child.step_slug = d.step_slug
      join pgflow.step_states as child_state
        on child_state.run_id = complete_task.run_id and child_state.step_slug = d.step_slug
      where d.flow_slug = v_run.flow_slug
        and d.dep_slug = complete_task.step_slug
        and child.step_type = 'map'
        and child_state.initial_tasks is null
      order by child.step_index
      limit 1;
    end if;

    if v_map_child is not null then
      -- The step and the run fail as in _fail_step_and_run (fail_task, unmet conditions),
      -- but not through it: pgflow announces run:failed first here, without
      -- error_message, then step:failed; and this task must be failed before the run's
      -- other tasks are cancelled.
      v_produced := coalesce(jsonb_typeof(complete_task.output), 'null');

      update pgflow.runs as r
      set status = 'failed', failed_at = now()
      where r.run_id = complete_task.run_id
      returning r.* into v_run;

      -- No error_message key in this run:failed payload (pgflow sends none here).
      perform pgflow._emit_run_failed(
        v_run.run_id,
        v_run.flow_slug,
        v_run.status,
        v_run.failed_at
      );

      -- The task fails first, so cancelling the run's other tasks leaves it 'failed'.
      update pgflow.step_tasks as t
      set status = 'failed',
          failed_at = now(),
          output = complete_task.output,
          error_message = '[TYPE_VIOLATION] Produced ' || v_produced || ' instead of array'
      where t.run_id = complete_task.run_id
        and t.step_slug = complete_task.step_slug
        and t.task_index = complete_task.task_index;

      perform pgflow._cancel_run_tasks(complete_task.run_id);

      update pgflow.step_states as ss
      set status = 'failed',
          failed_at = now(),
          error_message = '[TYPE_VIOLATION] Map step ' || v_map_child
            || ' expects array input but dependency ' || complete_task.step_slug
            || ' produced ' || v_produced
      where ss.run_id = complete_task.run_id
        and ss.step_slug = complete_task.step_slug
      returning ss.* into v_state;

      perform pgflow._emit_step_failed(
        v_state.run_id,
        v_state.step_slug,
        v_state.status,
        v_state.error_message,
        v_state.failed_at
      );

      perform pgflow._archive_task_message(complete_task.run_id, complete_task.step_slug, complete_task.task_index);
      exit callback;
    end if;

    -- 4. Normal path, only for a started task; the output is stored exactly as given
    -- (false, 0 and "" stay what they are).
    update pgflow.step_tasks as t
    set status = 'completed',
        completed_at = now(),
        output = complete_task.output
    where t.run_id = complete_task.run_id
      and t.step_slug = complete_task.step_slug
      and t.task_index = complete_task.task_index
      and t.status = 'started'
    returning t.flow_slug, t.message_id into v_task_flow_slug, v_message_id;

    if not found then
      -- Queued, completed or failed task: nothing changes, nothing is archived.
      exit callback;
    end if;

    update pgflow.step_states as ss
    set remaining_tasks = ss.remaining_tasks - 1
    where ss.run_id = complete_task.run_id
      and ss.step_slug = complete_task.step_slug
    returning ss.* into v_state;

    if v_state.remaining_tasks = 0 then
      -- The last task completes the step. A map's output is every task's output ordered by
      -- task_index (JSON nulls kept), not by completion order.
      -- (Two statements rather than one CASE, so each has a cached plan.)
      if v_step.step_type = 'map' then
        update pgflow.step_states as ss
        set status = 'completed',
            completed_at = now(),
            output = coalesce(
              (
                select jsonb_agg(t.output order by t.task_index)
                from pgflow.step_tasks as t
                where t.run_id = complete_task.run_id
                  and t.step_slug = complete_task.step_slug
                  and t.status = 'completed'
              ),
              '[]'::jsonb
            )
        where ss.run_id = complete_task.run_id
          and ss.step_slug = complete_task.step_slug
        returning ss.* into v_state;
      else
        update pgflow.step_states as ss
        set status = 'completed',
            completed_at = now(),
            output = complete_task.output
        where ss.run_id = complete_task.run_id
          and ss.step_slug = complete_task.step_slug
        returning ss.* into v_state;
      end if;

      -- A dependent map waiting for its array learns its task count from it. The output is
      -- an array here for a map parent, and for a single parent the type check above ran.
      if jsonb_typeof(v_state.output) = 'array' then
        v_child_tasks := jsonb_array_length(v_state.output);
      end if;

      update pgflow.step_states as child_state
      set remaining_deps = child_state.remaining_deps - 1,
          initial_tasks = case
            when child.step_type = 'map' and child_state.initial_tasks is null then v_child_tasks
            else child_state.initial_tasks
          end
      from pgflow.deps as d
      join pgflow.steps as child
        on child.flow_slug = d.flow_slug and child.step_slug = d.step_slug
      where d.flow_slug = v_run.flow_slug
        and d.dep_slug = complete_task.step_slug
        and child_state.run_id = complete_task.run_id
        and child_state.step_slug = d.step_slug;

      update pgflow.runs as r
      set remaining_steps = r.remaining_steps - 1
      where r.run_id = complete_task.run_id;

      -- 5. Events and what the completion unlocks.
      perform pgflow._emit_step_completed(
        v_state.run_id,
        v_state.step_slug,
        v_state.status,
        v_state.output,
        v_state.completed_at
      );

      if not pgflow.cascade_resolve_conditions(complete_task.run_id) then
        -- An unmet condition with when_unmet=fail failed the run.
        if v_message_id is not null then
          perform pgmq.archive(v_task_flow_slug, v_message_id);
        end if;
        exit callback;
      end if;

      perform pgflow.cascade_complete_taskless_steps(complete_task.run_id);
    end if;

    -- The task's message, as _archive_task_message would archive it (known from the update
    -- above, so no lookup).
    if v_message_id is not null then
      perform pgmq.archive(v_task_flow_slug, v_message_id);
    end if;
    perform pgflow.start_ready_steps(complete_task.run_id);
    perform pgflow.maybe_complete_run(complete_task.run_id);
  end;

  return query
    select t.* from pgflow.step_tasks as t
    where t.run_id = complete_task.run_id
      and t.step_slug = complete_task.step_slug
      and t.task_index = complete_task.task_index;
end;
