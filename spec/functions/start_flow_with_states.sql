declare
  new_run_id uuid;
begin
  select r.run_id into new_run_id
  from pgflow.start_flow(
    start_flow_with_states.flow_slug,
    start_flow_with_states.input,
    start_flow_with_states.run_id
  ) as r;

  return pgflow.get_run_with_states(new_run_id);
end;
