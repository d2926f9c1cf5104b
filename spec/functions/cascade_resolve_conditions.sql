declare
  max_iterations constant integer := 50;
  iterations integer := 0;
  run_status text;
  fail_slug text;
  skip_slugs text[];
  cascade_slugs text[];
  cascade_slug text;
begin
  select r.status into run_status
  from pgflow.runs as r
  where r.run_id = cascade_resolve_conditions.run_id
  for update;
  if run_status = 'failed' then
    return false;
  elsif run_status = 'completed' then
    return true;
  end if;

  loop
    -- Ready steps with a condition, and the input it is tested against: the flow input
    -- for a root step, otherwise the outputs of its completed dependencies (skipped ones
    -- are left out). Met = contains the `if` pattern and does not contain the `ifNot` one.
    with conditional as (
      select
        ss.step_slug,
        s.step_index,
        s.when_unmet,
        s.required_input_pattern,
        s.forbidden_input_pattern,
        case
          when s.deps_count = 0 then r.input
          else coalesce(
            (
              select jsonb_object_agg(d.dep_slug, dep_state.output)
              from pgflow.deps as d
              join pgflow.step_states as dep_state
                on dep_state.run_id = ss.run_id and dep_state.step_slug = d.dep_slug
              where d.flow_slug = ss.flow_slug
                and d.step_slug = ss.step_slug
                and dep_state.status = 'completed'
            ),
            '{}'::jsonb
          )
        end as step_input
      from pgflow.step_states as ss
      join pgflow.steps as s on s.flow_slug = ss.flow_slug and s.step_slug = ss.step_slug
      join pgflow.runs as r on r.run_id = ss.run_id
      where ss.run_id = cascade_resolve_conditions.run_id
        and ss.status = 'created'
        and ss.remaining_deps = 0
        and (s.required_input_pattern is not null or s.forbidden_input_pattern is not null)
    ),
    unmet as (
      select c.step_slug, c.step_index, c.when_unmet
      from conditional as c
      where not (
        (c.required_input_pattern is null or c.step_input @> c.required_input_pattern)
        and (c.forbidden_input_pattern is null or not c.step_input @> c.forbidden_input_pattern)
      )
    )
    select
      (array_agg(u.step_slug order by u.step_index) filter (where u.when_unmet = 'fail'))[1],
      array_agg(u.step_slug order by u.step_index) filter (where u.when_unmet = 'skip'),
      array_agg(u.step_slug order by u.step_index) filter (where u.when_unmet = 'skip-cascade')
    into fail_slug, skip_slugs, cascade_slugs
    from unmet as u;

    exit when fail_slug is null and skip_slugs is null and cascade_slugs is null;

    iterations := iterations + 1;
    if iterations > max_iterations then
      raise exception 'cascade_resolve_conditions exceeded safety limit of % iterations',
        max_iterations;
    end if;

    -- Phase 1a: the first unmet step with when_unmet = 'fail' fails the step and the run.
    if fail_slug is not null then
      perform pgflow._fail_step_and_run(cascade_resolve_conditions.run_id, fail_slug, 'Condition not met');
      return false;
    end if;

    -- Phase 1b: unmet steps with when_unmet = 'skip' are skipped alone.
    if skip_slugs is not null then
      update pgflow.step_states as ss
      set status = 'skipped',
          skip_reason = 'condition_unmet',
          skipped_at = now()
      where ss.run_id = cascade_resolve_conditions.run_id
        and ss.step_slug = any(skip_slugs);

      perform pgflow._emit_skipped_steps(cascade_resolve_conditions.run_id, skip_slugs);

      -- Children lose one dependency per skipped parent. A skipped dependency counts as
      -- an empty array for a map child, which therefore has no task.
      update pgflow.step_states as child
      set remaining_deps = child.remaining_deps - parents.skipped,
          initial_tasks = case
            when cs.step_type = 'map' and cs.deps_count = 1 then 0
            else child.initial_tasks
          end
      from (
        select d.flow_slug, d.step_slug, count(*)::integer as skipped
        from pgflow.deps as d
        join pgflow.runs as r on r.flow_slug = d.flow_slug
        where r.run_id = cascade_resolve_conditions.run_id
          and d.dep_slug = any(skip_slugs)
        group by d.flow_slug, d.step_slug
      ) as parents,
      pgflow.steps as cs
      where child.run_id = cascade_resolve_conditions.run_id
        and child.step_slug = parents.step_slug
        and cs.flow_slug = parents.flow_slug
        and cs.step_slug = parents.step_slug;

      update pgflow.runs as r
      set remaining_steps = r.remaining_steps - cardinality(skip_slugs)
      where r.run_id = cascade_resolve_conditions.run_id;
    end if;

    -- Phase 1c: unmet steps with when_unmet = 'skip-cascade' are skipped with everything
    -- downstream of them.
    if cascade_slugs is not null then
      foreach cascade_slug in array cascade_slugs loop
        perform pgflow._cascade_force_skip_steps(
          cascade_resolve_conditions.run_id, cascade_slug, 'condition_unmet'
        );
      end loop;
    end if;

    select r.status into run_status
    from pgflow.runs as r
    where r.run_id = cascade_resolve_conditions.run_id;
    if run_status = 'failed' then
      return false;
    elsif run_status = 'completed' then
      return true;
    end if;

    -- Only plain skips can make children ready; they are evaluated in the next round.
    exit when skip_slugs is null;
  end loop;

  return true;
end;
