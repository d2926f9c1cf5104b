declare
  n integer := coalesce(cardinality(complete_tasks.run_ids), 0);
  i integer := 1;
  j integer;
  cut integer;
  seg_run uuid;
  seg_step text;
  v_run_status text;
  v_flow_slug text;
  v_state pgflow.step_states;
  v_step_type text;
  v_started integer;
  v_done integer;
  v_msg_ids bigint[];
  window_end integer;
  group_len integer;
begin
  if n <> coalesce(cardinality(complete_tasks.step_slugs), 0)
    or n <> coalesce(cardinality(complete_tasks.task_indexes), 0)
    or n <> coalesce(cardinality(complete_tasks.outputs), 0)
  then
    raise exception 'batch arrays differ in length: run_ids %, step_slugs %, task_indexes %, outputs %',
      coalesce(cardinality(complete_tasks.run_ids), 0),
      coalesce(cardinality(complete_tasks.step_slugs), 0),
      coalesce(cardinality(complete_tasks.task_indexes), 0),
      coalesce(cardinality(complete_tasks.outputs), 0);
  end if;

  -- Every run of the batch is locked up front, in run_id order (complete_task locks its
  -- run first too): concurrent batches naming the same runs in different orders would
  -- otherwise deadlock.
  perform 1
  from pgflow.runs as r
  where r.run_id = any(complete_tasks.run_ids)
  order by r.run_id
  for update;

  while i <= n loop
    -- Final completions of single steps in different runs: the entries from i on that
    -- _complete_final_tasks may take (see there), set-based. Entries of one run next to
    -- each other (a map's tasks) cannot form such a group: not even checked.
    if i < n and complete_tasks.run_ids[i + 1] is distinct from complete_tasks.run_ids[i] then
      -- At most 200 entries are checked at a time (a longer stretch forms several groups).
      window_end := least(n, i + 199);
      select coalesce(min(f.ord) filter (where not f.eligible), window_end - i + 2)::integer - 1
      into group_len
      from (
        select
          e.ord,
          row_number() over (partition by e.run_id order by e.ord) = 1
          and exists (
            -- Every row is found by its primary key. The run's status is read by a scalar
            -- subquery on run_id alone: as a join condition beside run_id, status = 'started'
            -- let the cached plan of a young database (no statistics yet) pick idx_runs_status
            -- and scan every started run for each entry (W2's batch drain lost ~20 %).
            select 1
            from pgflow.step_states as ss
            join pgflow.steps as s
              on s.flow_slug = ss.flow_slug and s.step_slug = ss.step_slug
            join pgflow.step_tasks as t
              on t.run_id = ss.run_id and t.step_slug = ss.step_slug and t.task_index = e.task_index
            where ss.run_id = e.run_id
              and ss.step_slug = e.step_slug
              and (select r.status from pgflow.runs as r where r.run_id = e.run_id) = 'started'
              and ss.status = 'started'
              and ss.remaining_tasks = 1
              and s.step_type = 'single'
              and t.status = 'started'
              -- no condition anywhere in the flow
              and not exists (
                select 1
                from pgflow.steps as c
                where c.flow_slug = ss.flow_slug
                  and (c.required_input_pattern is not null or c.forbidden_input_pattern is not null)
              )
              -- no map depends on the step (no type check, no task count to set)
              and not exists (
                select 1
                from pgflow.deps as d
                join pgflow.steps as c on c.flow_slug = d.flow_slug and c.step_slug = d.step_slug
                where d.flow_slug = ss.flow_slug
                  and d.dep_slug = e.step_slug
                  and c.step_type = 'map'
              )
              -- no taskless step waiting in the run
              and not exists (
                select 1
                from pgflow.step_states as x
                where x.run_id = e.run_id
                  and x.status = 'created'
                  and x.initial_tasks = 0
              )
          ) as eligible
        from unnest(
          complete_tasks.run_ids[i:window_end],
          complete_tasks.step_slugs[i:window_end],
          complete_tasks.task_indexes[i:window_end]
        ) with ordinality as e(run_id, step_slug, task_index, ord)
      ) as f;

      if group_len >= 2 then
        return query
          select *
          from pgflow._complete_final_tasks(
            complete_tasks.run_ids[i:i + group_len - 1],
            complete_tasks.step_slugs[i:i + group_len - 1],
            complete_tasks.task_indexes[i:i + group_len - 1],
            complete_tasks.outputs[i:i + group_len - 1]
          );
        i := i + group_len;
        continue;
      end if;
    end if;

    seg_run := complete_tasks.run_ids[i];
    seg_step := complete_tasks.step_slugs[i];

    -- The segment i..j: consecutive entries for the same step of the same run.
    j := i;
    while j < n
      and complete_tasks.run_ids[j + 1] is not distinct from seg_run
      and complete_tasks.step_slugs[j + 1] is not distinct from seg_step
    loop
      j := j + 1;
    end loop;

    -- Fast path: completions of a started map step that leave tasks remaining have no
    -- effect beyond their own task row, one remaining_tasks decrement and one archived
    -- message each (no event, no type check, nothing else becomes ready), so they are
    -- applied set-based, with complete_task's locks in complete_task's order. The entry
    -- that finishes the step (and everything after it) goes through complete_task.
    cut := i - 1;
    if seg_run is not null and seg_step is not null then
      select r.status, r.flow_slug into v_run_status, v_flow_slug
      from pgflow.runs as r
      where r.run_id = seg_run
      for update;

      if v_run_status = 'started' then
        select ss.* into v_state
        from pgflow.step_states as ss
        where ss.run_id = seg_run
          and ss.step_slug = seg_step
        for update;

        select s.step_type into v_step_type
        from pgflow.steps as s
        where s.flow_slug = v_flow_slug
          and s.step_slug = seg_step;

        if v_state.status = 'started' and v_step_type = 'map' then
          -- Entries of the segment that would really complete a task: the first entry of
          -- each started task (a repeated entry finds it completed and changes nothing).
          with entries as (
            select e.task_index, e.ord
            from unnest(complete_tasks.task_indexes[i:j]) with ordinality as e(task_index, ord)
          ),
          effective as (
            select distinct on (e.task_index) e.task_index, e.ord
            from entries as e
            join pgflow.step_tasks as t
              on t.run_id = seg_run
              and t.step_slug = seg_step
              and t.task_index = e.task_index
            where t.status = 'started'
            order by e.task_index, e.ord
          ),
          numbered as (
            select f.ord, row_number() over (order by f.ord) as nth
            from effective as f
          )
          select count(*)::integer, min(x.ord) filter (where x.nth = v_state.remaining_tasks)
          into v_started, cut
          from numbered as x;

          if cut is null then
            -- No entry finishes the step: the whole segment is fast.
            cut := j;
          else
            -- Entries before the finishing one are fast (positions are 1-based in the
            -- segment); the finishing one starts the slow part.
            cut := i + cut::integer - 2;
          end if;

          if cut >= i then
            with entries as (
              select e.task_index, e.output, e.ord
              from unnest(
                complete_tasks.task_indexes[i:cut],
                complete_tasks.outputs[i:cut]
              ) with ordinality as e(task_index, output, ord)
            ),
            firsts as (
              select distinct on (e.task_index) e.task_index, e.output
              from entries as e
              where e.task_index is not null
              order by e.task_index, e.ord
            ),
            done as (
              update pgflow.step_tasks as t
              set status = 'completed',
                  completed_at = now(),
                  output = f.output
              from firsts as f
              where t.run_id = seg_run
                and t.step_slug = seg_step
                and t.task_index = f.task_index
                and t.status = 'started'
              returning t.message_id
            )
            select count(*)::integer, array_agg(d.message_id order by d.message_id)
              filter (where d.message_id is not null)
            into v_done, v_msg_ids
            from done as d;

            if v_done > 0 then
              update pgflow.step_states as ss
              set remaining_tasks = ss.remaining_tasks - v_done
              where ss.run_id = seg_run
                and ss.step_slug = seg_step;

              if v_msg_ids is not null then
                perform pgmq.archive(v_flow_slug, v_msg_ids);
              end if;

              -- What complete_task does after every completion; idempotent, so once.
              perform pgflow.start_ready_steps(seg_run);
              perform pgflow.maybe_complete_run(seg_run);
            end if;

            return query
              select t.*
              from unnest(complete_tasks.task_indexes[i:cut]) with ordinality as e(task_index, ord)
              join pgflow.step_tasks as t
                on t.run_id = seg_run
                and t.step_slug = seg_step
                and t.task_index = e.task_index
              order by e.ord;
          end if;
        end if;
      end if;
    end if;

    -- Slow path: complete_task itself, entry by entry.
    for k in greatest(cut + 1, i)..j loop
      return query
        select *
        from pgflow.complete_task(
          complete_tasks.run_ids[k],
          complete_tasks.step_slugs[k],
          complete_tasks.task_indexes[k],
          complete_tasks.outputs[k]
        );
    end loop;

    i := j + 1;
  end loop;
end;
