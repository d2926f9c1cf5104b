select pgmq.archive(t.flow_slug, t.message_id)
from pgflow.step_tasks as t
where t.run_id = _archive_task_message.p_run_id
  and t.step_slug = _archive_task_message.p_step_slug
  and t.task_index = _archive_task_message.p_task_index
  and t.message_id is not null
