begin
  if start_flows.inputs is null then
    raise exception 'start_flows needs an array of flow inputs, got NULL';
  end if;
  return query
  select *
  from pgflow._start_runs(start_flows.flow_slug, start_flows.inputs, null);
end;
