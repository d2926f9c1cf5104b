declare
  differences text[];
  local_mode boolean;
begin
  -- Only an object with a steps array is a shape; anything else would compile an empty
  -- flow (or verify against one).
  if jsonb_typeof(ensure_flow_compiled.shape -> 'steps') is distinct from 'array' then
    raise exception using
      errcode = '22023',
      message = format(
        'Shape of flow %s must be a JSON object with a steps array (got %s)',
        ensure_flow_compiled.flow_slug,
        case
          when ensure_flow_compiled.shape is null then 'NULL'
          when jsonb_typeof(ensure_flow_compiled.shape) = 'object' then 'an object without a steps array'
          else jsonb_typeof(ensure_flow_compiled.shape)
        end
      );
  end if;

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
  -- that is acceptable: a local development database (a setting only admins can make),
  -- or when the caller allows it and may destroy data: the session's login role is an
  -- admin (this function runs as its owner, so current_user would not tell).
  local_mode := pgflow.is_local();
  if not local_mode and not coalesce(ensure_flow_compiled.allow_data_loss, false) then
    return jsonb_build_object('status', 'mismatch', 'differences', to_jsonb(differences));
  end if;
  if not local_mode and not pgflow._session_is_admin() then
    raise exception using
      errcode = '42501',
      message = format(
        'Recompiling flow %s deletes its runs: allow_data_loss needs the pgflow_admin role',
        ensure_flow_compiled.flow_slug
      );
  end if;

  perform pgflow.delete_flow_and_data(ensure_flow_compiled.flow_slug);
  perform pgflow._create_flow_from_shape(ensure_flow_compiled.flow_slug, ensure_flow_compiled.shape);
  return jsonb_build_object('status', 'recompiled', 'differences', to_jsonb(differences));
end;
