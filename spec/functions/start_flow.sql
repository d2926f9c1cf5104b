begin
  return query
  select *
  from pgflow._start_runs(start_flow.flow_slug, array[start_flow.input], array[start_flow.run_id]);
end;
