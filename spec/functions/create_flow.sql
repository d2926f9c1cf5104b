with inserted as (
  insert into pgflow.flows (flow_slug, opt_max_attempts, opt_base_delay, opt_timeout)
  values (
    create_flow.flow_slug,
    coalesce(create_flow.max_attempts, 3),
    coalesce(create_flow.base_delay, 5),
    coalesce(create_flow.timeout, 60)
  )
  on conflict (flow_slug) do update set flow_slug = pgflow.flows.flow_slug
  returning *
),
queue as (
  select pgmq.create(create_flow.flow_slug)
  where not exists (
    select 1 from pgmq.list_queues() as q where q.queue_name = create_flow.flow_slug
  )
)
select inserted.*
from inserted
left join queue on true
