insert into fulfilment.customers (email, name)
values (register_customer.email, register_customer.name)
returning *
