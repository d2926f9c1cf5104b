declare
  batch record;
  requeued integer := 0;
begin
  for batch in
    with stalled as (
      -- Started tasks whose worker has been silent longer than the step's timeout (else
      -- the flow's) plus 30 s of grace. pgflow looks at the flow timeout only, so a step
      -- with a longer timeout of its own was requeued while still running.
      -- SKIP LOCKED: a task a worker is completing or failing right now is left alone.
      select t.run_id, t.step_slug, t.task_index, t.requeued_count < 3 as requeue
      from pgflow.step_tasks as t
      join pgflow.steps as s on s.flow_slug = t.flow_slug and s.step_slug = t.step_slug
      join pgflow.flows as f on f.flow_slug = t.flow_slug
      where t.status = 'started'
        and t.permanently_stalled_at is null
        and t.started_at < now() - make_interval(secs => coalesce(s.opt_timeout, f.opt_timeout) + 30)
      for update of t skip locked
    ),
    changed as (
      -- Requeue at most 3 times (attempts_count stays: a stall is not a failed attempt);
      -- after that the task is given up: permanently stalled, its status left 'started'.
      update pgflow.step_tasks as t
      set status = case when x.requeue then 'queued' else t.status end,
          started_at = case when x.requeue then null else t.started_at end,
          last_worker_id = case when x.requeue then null else t.last_worker_id end,
          requeued_count = case when x.requeue then t.requeued_count + 1 else t.requeued_count end,
          last_requeued_at = case when x.requeue then now() else t.last_requeued_at end,
          permanently_stalled_at = case when x.requeue then null else now() end
      from stalled as x
      where t.run_id = x.run_id
        and t.step_slug = x.step_slug
        and t.task_index = x.task_index
      returning t.flow_slug, t.message_id, x.requeue
    )
    select
      c.flow_slug,
      count(*) filter (where c.requeue) as requeued,
      array_agg(c.message_id order by c.message_id)
        filter (where c.requeue and c.message_id is not null) as requeue_ids,
      array_agg(c.message_id order by c.message_id)
        filter (where not c.requeue and c.message_id is not null) as give_up_ids
    from changed as c
    group by c.flow_slug
  loop
    if batch.requeue_ids is not null then
      -- visible again at once, so the next poll hands the task to a live worker
      perform pgflow.set_vt_batch(
        batch.flow_slug,
        batch.requeue_ids,
        array_fill(0, array[cardinality(batch.requeue_ids)])
      );
    end if;
    if batch.give_up_ids is not null then
      perform pgmq.archive(batch.flow_slug, batch.give_up_ids);
    end if;
    requeued := requeued + batch.requeued;
  end loop;

  return requeued;
end;
