-- The statement lives in the PL/pgSQL function _start_tasks, whose plans are cached for
-- the session: a SQL function's statements are planned again at every call.
select *
from pgflow._start_tasks(
  start_tasks.flow_slug,
  start_tasks.msg_ids,
  start_tasks.worker_id,
  false
);
