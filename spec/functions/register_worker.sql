insert into pgflow.workers as w (worker_id, queue_name, function_name, started_at, last_heartbeat_at)
values (
  register_worker.worker_id,
  register_worker.queue_name,
  register_worker.function_name,
  clock_timestamp(),
  clock_timestamp()
)
on conflict (worker_id) do update set
  queue_name = excluded.queue_name,
  function_name = excluded.function_name,
  last_heartbeat_at = excluded.last_heartbeat_at,
  stopped_at = null
returning *
