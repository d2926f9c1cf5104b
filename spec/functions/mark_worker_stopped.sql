update pgflow.workers as w
set stopped_at = clock_timestamp()
where w.worker_id = mark_worker_stopped.worker_id
