declare
  dep_count integer := coalesce(cardinality(add_step.deps_slugs), 0);
  next_index integer;
  result pgflow.steps;
begin
  if coalesce(add_step.step_type, 'single') = 'map' and dep_count > 1 then
    raise exception 'Map step "%" can have at most one dependency, but % were provided: %',
      add_step.step_slug, dep_count, array_to_string(add_step.deps_slugs, ', ');
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
  on conflict on constraint steps_pkey do update set step_slug = excluded.step_slug
  returning * into result;

  insert into pgflow.deps (flow_slug, dep_slug, step_slug)
  select add_step.flow_slug, dep.slug, add_step.step_slug
  from unnest(add_step.deps_slugs) as dep(slug)
  on conflict on constraint deps_pkey do nothing;

  return result;
end;
