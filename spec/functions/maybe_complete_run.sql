declare
  completed_run pgflow.runs;
begin
  -- The only guard besides remaining_steps is "not completed yet", as in pgflow.
  update pgflow.runs as r
  set status = 'completed',
      completed_at = now(),
      -- Outputs of the completed leaf steps (no dependants); skipped leaves are left out,
      -- NULL when there are none.
      output = (
        select jsonb_object_agg(ss.step_slug, ss.output)
        from pgflow.step_states as ss
        where ss.run_id = r.run_id
          and ss.status = 'completed'
          and not exists (
            select 1
            from pgflow.deps as d
            where d.flow_slug = ss.flow_slug
              and d.dep_slug = ss.step_slug
          )
      )
  where r.run_id = maybe_complete_run.run_id
    and r.remaining_steps = 0
    and r.status <> 'completed'
  returning r.* into completed_run;

  if found then
    perform pgflow._emit_run_completed(
      completed_run.run_id,
      completed_run.flow_slug,
      completed_run.status,
      completed_run.output,
      completed_run.completed_at
    );
  end if;
end;
