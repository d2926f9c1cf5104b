declare
  v_source pgflow.runs;
  v_new_run_id uuid;
  v_run pgflow.runs;
begin
  v_source := pgflow._restart_source(retry_run.run_id);

  select r.run_id into v_new_run_id
  from pgflow.start_flow(v_source.flow_slug, v_source.input) as r;

  update pgflow.runs as r
  set restart_of_run_id = v_source.run_id
  where r.run_id = v_new_run_id
  returning r.* into v_run;

  return v_run;
end;
