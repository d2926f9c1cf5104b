select pg_notify(
  'orders:' || _notify.order_id,
  (_notify.payload || jsonb_build_object('event', _notify.event, 'order_id', _notify.order_id))::text
)
