insert into pgflow.workers as w (worker_id, queue_name, function_name, started_at, last_heartbeat_at)
select
  register_worker.worker_id,
  register_worker.queue_name,
  register_worker.function_name,
  moment.at,
  moment.at
from (select clock_timestamp() as at) as moment
on conflict (worker_id) do update set
  queue_name = excluded.queue_name,
  function_name = excluded.function_name,
  last_heartbeat_at = excluded.last_heartbeat_at,
  stopped_at = null
returning *
