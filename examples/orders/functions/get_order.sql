select jsonb_build_object(
  'order', to_jsonb(o),
  'lines', coalesce(
    (
      select jsonb_agg(to_jsonb(l) order by l.sku)
      from fulfilment.order_lines as l
      where l.order_id = o.order_id
    ),
    '[]'::jsonb
  )
)
from fulfilment.orders as o
where o.order_id = get_order.order_id
