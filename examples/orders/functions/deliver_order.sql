declare
  target fulfilment.orders;
begin
  perform fulfilment._lock_order(deliver_order.order_id, array['shipped'], 'deliver');
  update fulfilment.orders as o
  set status = 'delivered', delivered_at = now()
  where o.order_id = deliver_order.order_id
  returning * into target;
  perform fulfilment._notify(
    target.order_id, 'order:delivered', jsonb_build_object('delivered_at', target.delivered_at)
  );
  return target;
end
