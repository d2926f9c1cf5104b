declare
  v_source pgflow.runs;
begin
  -- A share lock keeps the source as it is while the new run starts (it is never
  -- modified: a failed or cancelled run cannot change anyway).
  select r.* into v_source
  from pgflow.runs as r
  where r.run_id = p_run_id
  for share;

  if not found then
    raise exception 'Run not found: %', p_run_id;
  end if;

  if v_source.status not in ('failed', 'cancelled') then
    raise exception 'Run % cannot be retried or resumed: it is % (only failed or cancelled runs can)',
      p_run_id, v_source.status;
  end if;

  return v_source;
end;
