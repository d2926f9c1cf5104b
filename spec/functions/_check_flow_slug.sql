declare
  conflicting text;
begin
  -- pgmq refuses longer queue names (pgmq.validate_queue_name: its tables' names must fit
  -- PostgreSQL's 63-byte identifiers); refuse them here, with the limit, at definition time.
  if length(_check_flow_slug.flow_slug) > 47 then
    raise exception 'Flow slug "%" is % characters long, but pgmq queue names allow at most % characters',
      _check_flow_slug.flow_slug, length(_check_flow_slug.flow_slug), 47;
  end if;

  -- pgmq lower-cases queue names, so flows whose slugs differ only in case would share
  -- one queue. Flows defined at the same time under one lower-cased name wait for each
  -- other here; the statement below (a fresh snapshot) then sees the one committed first.
  perform pg_advisory_xact_lock(2, hashtext(lower(_check_flow_slug.flow_slug)));

  select f.flow_slug into conflicting
  from pgflow.flows as f
  where lower(f.flow_slug) = lower(_check_flow_slug.flow_slug)
    and f.flow_slug <> _check_flow_slug.flow_slug
  order by f.flow_slug
  limit 1;
  if found then
    raise exception 'Flow slug "%" differs only in case from the existing flow "%" (pgmq queue names ignore case)',
      _check_flow_slug.flow_slug, conflicting;
  end if;
end;
