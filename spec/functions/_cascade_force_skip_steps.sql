declare
  run_flow_slug text;
  skipped_slugs text[];
  message_ids bigint[];
begin
  select r.flow_slug into run_flow_slug
  from pgflow.runs as r
  where r.run_id = _cascade_force_skip_steps.run_id;
  if not found then
    raise exception 'Run not found: %', _cascade_force_skip_steps.run_id;
  end if;

  -- The step and everything downstream of it that has not finished yet.
  with recursive downstream (step_slug) as (
    select _cascade_force_skip_steps.step_slug
    union
    select d.step_slug
    from pgflow.deps as d
    join downstream on d.dep_slug = downstream.step_slug
    where d.flow_slug = run_flow_slug
  ),
  skipped as (
    update pgflow.step_states as ss
    set status = 'skipped',
        skip_reason = case
          when ss.step_slug = _cascade_force_skip_steps.step_slug
            then _cascade_force_skip_steps.skip_reason
          else 'dependency_skipped'
        end,
        skipped_at = now(),
        remaining_tasks = null
    from downstream
    where ss.run_id = _cascade_force_skip_steps.run_id
      and ss.step_slug = downstream.step_slug
      and ss.status in ('created', 'started')
    returning ss.step_slug
  )
  select array_agg(skipped.step_slug) into skipped_slugs
  from skipped;

  if skipped_slugs is null then
    return 0;
  end if;

  -- Their unfinished tasks will never run: mark them skipped, then archive their
  -- messages (task rows before queue rows, the lock order of start_tasks).
  with skipped_tasks as (
    update pgflow.step_tasks as t
    set status = 'skipped'
    where t.run_id = _cascade_force_skip_steps.run_id
      and t.step_slug = any(skipped_slugs)
      and t.status in ('queued', 'started')
    returning t.message_id
  )
  select array_agg(st.message_id) filter (where st.message_id is not null)
  into message_ids
  from skipped_tasks as st;

  if message_ids is not null then
    perform pgmq.archive(run_flow_slug, message_ids);
  end if;

  perform pgflow._emit_skipped_steps(_cascade_force_skip_steps.run_id, skipped_slugs);

  update pgflow.runs as r
  set remaining_steps = r.remaining_steps - cardinality(skipped_slugs)
  where r.run_id = _cascade_force_skip_steps.run_id;

  return cardinality(skipped_slugs);
end;
