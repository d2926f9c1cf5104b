-- 1. The flow row. An existing flow is left as it is: the no-op update only makes the
--    upsert succeed (its options are not changed). An invalid slug fails here, with the
--    slug_is_valid check, before anything reaches pgmq.
insert into pgflow.flows as f (flow_slug, opt_max_attempts, opt_base_delay, opt_timeout)
values (
  create_flow.flow_slug,
  coalesce(create_flow.max_attempts, 3),
  coalesce(create_flow.base_delay, 5),
  coalesce(create_flow.timeout, 60)
)
on conflict (flow_slug) do update set flow_slug = f.flow_slug;

-- 2. A valid slug pgmq could not keep apart from another flow's, or would refuse, is
--    refused with its own error (which rolls back the row inserted above).
select pgflow._check_flow_slug(create_flow.flow_slug);

-- 3. The flow's queue, unless pgmq already has it.
select pgmq.create(create_flow.flow_slug)
where not exists (
  select 1 from pgmq.list_queues() as q where q.queue_name = create_flow.flow_slug
);

-- 4. The row as stored: the new one, or the existing one unchanged.
select f.*
from pgflow.flows as f
where f.flow_slug = create_flow.flow_slug;
