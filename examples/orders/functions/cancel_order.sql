declare
  target fulfilment.orders;
begin
  perform fulfilment._lock_order(cancel_order.order_id, array['placed', 'paid'], 'cancel');
  update fulfilment.products as p
  set stock = p.stock + l.quantity
  from fulfilment.order_lines as l
  where l.order_id = cancel_order.order_id and l.sku = p.sku;
  update fulfilment.orders as o
  set status = 'cancelled', cancelled_at = now(), cancel_reason = cancel_order.reason
  where o.order_id = cancel_order.order_id
  returning * into target;
  perform fulfilment._emit_order_cancelled(target.order_id, target.cancel_reason);
  return target;
end
