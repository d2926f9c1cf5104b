begin
  if start_flows.inputs is null then
    raise exception 'start_flows needs a one-dimensional array of flow inputs, got NULL';
  elsif array_ndims(start_flows.inputs) > 1 then
    raise exception 'start_flows needs a one-dimensional array of flow inputs, got % dimensions',
      array_ndims(start_flows.inputs);
  end if;
  return query
  select *
  from pgflow._start_runs(start_flows.flow_slug, start_flows.inputs, null);
end;
