declare
  -- NOTIFY refuses payloads of 8000 bytes or more.
  max_notify_bytes constant integer := 7999;
  message text;
  slim jsonb;
  -- pg_notify's (empty) result: a plain assignment runs as a simple expression, cheaper
  -- than a PERFORM statement on this path taken by every event.
  ignored text;
begin
  -- Every event, in brief, also goes to one database-wide channel, so that a monitor such
  -- as `pgweave dashboard` follows all runs with a single LISTEN (the per-run topics below
  -- stay exactly as pgflow callers know them).
  ignored := pg_notify('pgweave:events', jsonb_strip_nulls(jsonb_build_object(
    'event', _broadcast.event,
    'run_id', _broadcast.payload -> 'run_id',
    'flow_slug', _broadcast.payload -> 'flow_slug',
    'status', _broadcast.payload -> 'status'
  ))::text);

  -- Supabase: exactly one realtime.send call per event, as pgflow makes it. Looked up at
  -- call time, so installing or dropping the realtime schema later needs no migration
  -- (the schema first: a cheap lookup that settles it on plain PostgreSQL).
  if to_regnamespace('realtime') is not null
     and to_regprocedure('realtime.send(jsonb, text, text, boolean)') is not null then
    perform realtime.send(_broadcast.payload, _broadcast.event, _broadcast.topic, false);
    return;
  end if;

  -- Plain PostgreSQL: the same event on the topic's NOTIFY channel.
  message := jsonb_build_object('event', _broadcast.event, 'payload', _broadcast.payload)::text;

  if octet_length(message) > max_notify_bytes then
    -- Too large: drop the big values (listeners re-read them from the tables).
    slim := (_broadcast.payload - 'output' - 'input') || jsonb_build_object('truncated', true);
    if octet_length(slim ->> 'error_message') > 1000 then
      slim := jsonb_set(slim, '{error_message}', to_jsonb(left(slim ->> 'error_message', 1000)));
    end if;
    message := jsonb_build_object('event', _broadcast.event, 'payload', slim)::text;
  end if;

  if octet_length(message) > max_notify_bytes then
    -- Still too large (pathological keys): keep only what identifies the event.
    select jsonb_object_agg(f.key, f.value) || jsonb_build_object('truncated', true)
    into slim
    from jsonb_each(_broadcast.payload) as f
    where f.key in ('event_type', 'run_id', 'flow_slug', 'step_slug', 'status')
      and jsonb_typeof(f.value) <> 'null';
    message := jsonb_build_object('event', _broadcast.event, 'payload', slim)::text;
  end if;

  ignored := pg_notify(_broadcast.topic, message);
end;
