declare
  locked fulfilment.orders;
begin
  select * into locked
  from fulfilment.orders as o
  where o.order_id = _lock_order.order_id
  for update;
  if not found then
    raise exception 'Order not found: %', _lock_order.order_id;
  end if;
  if not (locked.status = any (_lock_order.allowed)) then
    raise exception 'Order % is %: cannot %', _lock_order.order_id, locked.status, _lock_order.action
      using errcode = '55000';
  end if;
  return locked;
end
