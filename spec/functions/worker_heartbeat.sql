with beat as (
  update pgflow.workers as w
  set last_heartbeat_at = clock_timestamp()
  where w.worker_id = worker_heartbeat.worker_id
  returning w.deprecated_at
)
select coalesce((select beat.deprecated_at is null from beat), false)
