declare
  placed fulfilment.orders;
  line record;
  product fulfilment.products;
  total integer := 0;
begin
  if not exists (
    select 1 from fulfilment.customers as c where c.customer_id = place_order.customer_id
  ) then
    raise exception 'Customer not found: %', place_order.customer_id;
  end if;
  if jsonb_typeof(place_order.lines) is distinct from 'array'
    or jsonb_array_length(place_order.lines) = 0 then
    raise exception 'An order needs at least one line' using errcode = '22023';
  end if;
  insert into fulfilment.orders (customer_id, total_cents)
  values (place_order.customer_id, 0)
  returning * into placed;
  -- one line per product; products locked in sku order, so concurrent orders cannot deadlock
  for line in
    select l.sku, sum(l.quantity)::integer as quantity
    from jsonb_to_recordset(place_order.lines) as l (sku text, quantity integer)
    group by l.sku
    order by l.sku
  loop
    select * into product from fulfilment.products as p where p.sku = line.sku for update;
    if not found then
      raise exception 'Unknown product: %', line.sku;
    end if;
    if product.stock < line.quantity then
      raise exception 'Not enough stock of %: % left, % ordered',
        line.sku, product.stock, line.quantity;
    end if;
    update fulfilment.products as p set stock = p.stock - line.quantity where p.sku = line.sku;
    insert into fulfilment.order_lines (order_id, sku, quantity, price_cents)
    values (placed.order_id, line.sku, line.quantity, product.price_cents);
    total := total + line.quantity * product.price_cents;
  end loop;
  update fulfilment.orders as o set total_cents = total
  where o.order_id = placed.order_id
  returning * into placed;
  perform fulfilment._emit_order_placed(placed.order_id, placed.customer_id, placed.total_cents);
  return placed;
end
