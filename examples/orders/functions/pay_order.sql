declare
  target fulfilment.orders;
begin
  target := fulfilment._lock_order(pay_order.order_id, array['placed'], 'pay');
  if pay_order.amount_cents is distinct from target.total_cents then
    raise exception 'Payment of % cents does not match the total of % cents',
      pay_order.amount_cents, target.total_cents;
  end if;
  update fulfilment.orders as o
  set status = 'paid', paid_at = now()
  where o.order_id = pay_order.order_id
  returning * into target;
  perform fulfilment._emit_order_paid(target.order_id, target.paid_at);
  return target;
end
