declare
  step record;
begin
  -- step_index order puts parents before their children.
  for step in
    select ss.*
    from pgflow.step_states as ss
    join pgflow.steps as s on s.flow_slug = ss.flow_slug and s.step_slug = ss.step_slug
    where ss.run_id = _emit_skipped_steps.run_id
      and ss.step_slug = any(_emit_skipped_steps.step_slugs)
    order by s.step_index
  loop
    perform pgflow._emit_step_skipped_with_flow(
      step.run_id,
      step.step_slug,
      step.status,
      step.skip_reason,
      step.skipped_at,
      step.flow_slug
    );
  end loop;
end;
