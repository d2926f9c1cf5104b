begin
  -- Everything old in one call (and so in one transaction): the batched function until a
  -- batch finds nothing left. For short transactions call prune_data_older_than_batched
  -- itself, one batch per statement (see its documentation).
  perform pgflow.prune_data_older_than_batched(
    prune_data_older_than.retention_interval, 1000, null
  );
end;
