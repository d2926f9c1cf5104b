insert into fulfilment.products as p (sku, name, price_cents, stock)
values (add_product.sku, add_product.name, add_product.price_cents, add_product.stock)
on conflict (sku) do update set stock = p.stock + excluded.stock
returning *
