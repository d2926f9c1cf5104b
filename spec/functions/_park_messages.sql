declare
  -- Far in the future, yet a date every client can read (Python's ends at year 9999).
  parked constant timestamptz := '9000-01-01 00:00:00+00';
  changed integer;
begin
  if _park_messages.p_msg_ids is null or cardinality(_park_messages.p_msg_ids) = 0 then
    return 0;
  end if;

  -- A parked message has vt = 9000-01-01: pgmq does not hand it out, and it is told
  -- apart from a message waiting for a retry delay, which unparking must not cut short.
  execute format(
    $sql$
      update pgmq.%I as q
      set vt = case when $2 = 'unpark' then clock_timestamp() else $3 end
      where q.msg_id = any($1)
        and case $2
          when 'park' then q.vt <> $3
          when 'park_visible' then q.vt <= clock_timestamp()
          else q.vt = $3
        end
    $sql$,
    pgmq.format_table_name(_park_messages.p_flow_slug, 'q')
  )
  using _park_messages.p_msg_ids, _park_messages.p_mode, parked;

  get diagnostics changed = row_count;
  return changed;
end;
