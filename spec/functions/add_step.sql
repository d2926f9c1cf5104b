declare
  dep_count integer := coalesce(cardinality(add_step.deps_slugs), 0);
  duplicated text[];
  next_index integer;
  result pgflow.steps;
begin
  if coalesce(add_step.step_type, 'single') = 'map' and dep_count > 1 then
    raise exception 'Map step "%" can have at most one dependency, but % were provided: %',
      add_step.step_slug, dep_count, array_to_string(add_step.deps_slugs, ', ');
  end if;

  -- A dependency listed twice would count twice in deps_count but be stored once, so the
  -- step would wait forever for the missing one: refuse it before anything is written.
  select array_agg(dup.slug order by dup.first_position) into duplicated
  from (
    select dep.slug, min(dep.position) as first_position
    from unnest(add_step.deps_slugs) with ordinality as dep(slug, position)
    group by dep.slug
    having count(*) > 1
  ) as dup;
  if duplicated is not null then
    raise exception 'Step "%" lists a dependency more than once: %',
      add_step.step_slug, array_to_string(duplicated, ', ', 'NULL');
  end if;

  select coalesce(max(s.step_index) + 1, 0) into next_index
  from pgflow.steps as s
  where s.flow_slug = add_step.flow_slug;

  insert into pgflow.steps as s (
    flow_slug, step_slug, step_type, step_index, deps_count,
    opt_max_attempts, opt_base_delay, opt_timeout, opt_start_delay,
    required_input_pattern, forbidden_input_pattern, when_unmet, when_exhausted
  )
  values (
    add_step.flow_slug, add_step.step_slug, coalesce(add_step.step_type, 'single'), next_index, dep_count,
    add_step.max_attempts, add_step.base_delay, add_step.timeout, add_step.start_delay,
    add_step.required_input_pattern, add_step.forbidden_input_pattern,
    add_step.when_unmet, add_step.when_exhausted
  )
  on conflict on constraint steps_pkey do nothing
  returning * into result;

  -- An existing step is returned as it is: neither its options nor its dependencies
  -- change (new dependencies could contradict deps_count or even close a cycle).
  if not found then
    select s.* into result
    from pgflow.steps as s
    where s.flow_slug = add_step.flow_slug
      and s.step_slug = add_step.step_slug;
    return result;
  end if;

  insert into pgflow.deps (flow_slug, dep_slug, step_slug)
  select add_step.flow_slug, dep.slug, add_step.step_slug
  from unnest(add_step.deps_slugs) as dep(slug);

  return result;
end;
