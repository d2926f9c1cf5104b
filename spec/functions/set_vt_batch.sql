begin
  if set_vt_batch.msg_ids is null or set_vt_batch.vt_offsets is null then
    return;
  end if;

  if cardinality(set_vt_batch.msg_ids) <> cardinality(set_vt_batch.vt_offsets) then
    raise exception 'msg_ids length (%) must equal vt_offsets length (%)',
      cardinality(set_vt_batch.msg_ids), cardinality(set_vt_batch.vt_offsets);
  end if;

  -- One UPDATE of the queue table; even with empty arrays it runs, so a missing queue
  -- raises pgmq's own 42P01.
  return query execute format(
    $sql$
      update pgmq.%I as q
      set vt = clock_timestamp() + make_interval(secs => v.vt_offset)
      from unnest($1, $2) as v(msg_id, vt_offset)
      where q.msg_id = v.msg_id
      returning q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers
    $sql$,
    pgmq.format_table_name(set_vt_batch.queue_name, 'q')
  )
  using set_vt_batch.msg_ids, set_vt_batch.vt_offsets;
end;
