declare
  target fulfilment.orders;
begin
  perform fulfilment._lock_order(deliver_order.order_id, array['shipped'], 'deliver');
  update fulfilment.orders as o
  set status = 'delivered', delivered_at = now()
  where o.order_id = deliver_order.order_id
  returning * into target;
  perform fulfilment._emit_order_delivered(target.order_id, target.delivered_at);
  return target;
end
