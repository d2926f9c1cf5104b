select pg_notify(
  _broadcast.topic,
  ((_broadcast.payload - 'event_type') || jsonb_build_object('event', _broadcast.event))::text
)
