select m.msg_id
from pgmq.read_with_poll(
  pgflow._queue_of_flow(poll_messages.flow_slug),
  poll_messages.vt,
  poll_messages.qty,
  poll_messages.max_poll_seconds,
  poll_messages.poll_interval_ms
) as m
