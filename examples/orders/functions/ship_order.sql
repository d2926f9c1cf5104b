declare
  target fulfilment.orders;
begin
  perform fulfilment._lock_order(ship_order.order_id, array['paid'], 'ship');
  update fulfilment.orders as o
  set status = 'shipped', shipped_at = now(), tracking_code = ship_order.tracking_code
  where o.order_id = ship_order.order_id
  returning * into target;
  perform fulfilment._emit_order_shipped(target.order_id, target.tracking_code);
  return target;
end
