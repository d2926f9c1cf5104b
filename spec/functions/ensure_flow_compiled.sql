declare
  differences text[];
begin
  -- Serialise workers starting the same flow: the second one waits here and then, with a
  -- fresh snapshot for each statement below, sees what the first one compiled.
  perform pg_advisory_xact_lock(1, hashtext(ensure_flow_compiled.flow_slug));

  if not exists (
    select 1 from pgflow.flows as f where f.flow_slug = ensure_flow_compiled.flow_slug
  ) then
    perform pgflow._create_flow_from_shape(
      ensure_flow_compiled.flow_slug, ensure_flow_compiled.shape
    );
    return jsonb_build_object('status', 'compiled', 'differences', '[]'::jsonb);
  end if;

  differences := pgflow._compare_flow_shapes(
    ensure_flow_compiled.shape,
    pgflow._get_flow_shape(ensure_flow_compiled.flow_slug)
  );

  if cardinality(differences) = 0 then
    return jsonb_build_object('status', 'verified', 'differences', '[]'::jsonb);
  end if;

  -- A changed shape replaces the stored flow (dropping its runs and queue) only where
  -- that is acceptable: a local development database, or when the caller allows it.
  if pgflow.is_local() or coalesce(ensure_flow_compiled.allow_data_loss, false) then
    perform pgflow.delete_flow_and_data(ensure_flow_compiled.flow_slug);
    perform pgflow._create_flow_from_shape(
      ensure_flow_compiled.flow_slug, ensure_flow_compiled.shape
    );
    return jsonb_build_object('status', 'recompiled', 'differences', to_jsonb(differences));
  end if;

  return jsonb_build_object('status', 'mismatch', 'differences', to_jsonb(differences));
end;
