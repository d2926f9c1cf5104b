declare
  max_waves constant integer := 50;
  waves integer := 0;
  total integer := 0;
  wave_slugs text[];
  step record;
begin
  loop
    -- A wave: every ready step that has no task (an empty map, or a map whose
    -- dependency was empty or skipped).
    select array_agg(ss.step_slug) into wave_slugs
    from pgflow.step_states as ss
    where ss.run_id = cascade_complete_taskless_steps.run_id
      and ss.status = 'created'
      and ss.remaining_deps = 0
      and ss.initial_tasks = 0;

    exit when wave_slugs is null;

    waves := waves + 1;
    if waves > max_waves then
      raise exception 'Cascade loop exceeded safety limit of % iterations', max_waves;
    end if;

    -- A map completes with [], a single step (only reachable through direct updates)
    -- with NULL.
    update pgflow.step_states as ss
    set status = 'completed',
        started_at = now(),
        completed_at = now(),
        remaining_tasks = 0,
        output = case when s.step_type = 'map' then '[]'::jsonb end
    from pgflow.steps as s
    where ss.run_id = cascade_complete_taskless_steps.run_id
      and ss.step_slug = any(wave_slugs)
      and s.flow_slug = ss.flow_slug
      and s.step_slug = ss.step_slug;

    for step in
      select ss.*
      from pgflow.step_states as ss
      join pgflow.steps as s on s.flow_slug = ss.flow_slug and s.step_slug = ss.step_slug
      where ss.run_id = cascade_complete_taskless_steps.run_id
        and ss.step_slug = any(wave_slugs)
      order by s.step_index
    loop
      perform pgflow._emit_step_completed_taskless(
        step.run_id,
        step.step_slug,
        step.status,
        step.output,
        step.completed_at,
        step.started_at,
        0,
        0
      );
    end loop;

    -- Children lose one dependency per completed parent; a map child maps over the
    -- parent's empty array, so it has no task either.
    update pgflow.step_states as child
    set remaining_deps = child.remaining_deps - parents.completed,
        initial_tasks = case when cs.step_type = 'map' then 0 else child.initial_tasks end
    from (
      select d.flow_slug, d.step_slug, count(*)::integer as completed
      from pgflow.deps as d
      join pgflow.runs as r on r.flow_slug = d.flow_slug
      where r.run_id = cascade_complete_taskless_steps.run_id
        and d.dep_slug = any(wave_slugs)
      group by d.flow_slug, d.step_slug
    ) as parents,
    pgflow.steps as cs
    where child.run_id = cascade_complete_taskless_steps.run_id
      and child.step_slug = parents.step_slug
      and cs.flow_slug = parents.flow_slug
      and cs.step_slug = parents.step_slug;

    update pgflow.runs as r
    set remaining_steps = r.remaining_steps - cardinality(wave_slugs)
    where r.run_id = cascade_complete_taskless_steps.run_id;

    total := total + cardinality(wave_slugs);
  end loop;

  return total;
end;
