declare
  cutoff constant timestamptz := now() - prune_data_older_than.retention_interval;
  flow record;
begin
  -- Runs that finished before the cutoff go, with their step states and tasks. A run in
  -- progress is never touched, however old it is (it is judged by completed_at/failed_at,
  -- which it does not have yet).
  with old_runs as (
    select r.run_id
    from pgflow.runs as r
    where (r.status = 'completed' and r.completed_at < cutoff)
       or (r.status = 'failed' and r.failed_at < cutoff)
       or (r.status = 'cancelled' and r.cancelled_at < cutoff)
  ),
  old_tasks as (
    delete from pgflow.step_tasks as t
    using old_runs as o
    where t.run_id = o.run_id
  ),
  old_states as (
    delete from pgflow.step_states as s
    using old_runs as o
    where s.run_id = o.run_id
  )
  delete from pgflow.runs as r
  using old_runs as o
  where r.run_id = o.run_id;

  -- Workers silent since before the cutoff, unless a task that is kept still names them.
  delete from pgflow.workers as w
  where w.last_heartbeat_at < cutoff
    and not exists (
      select 1 from pgflow.step_tasks as t where t.last_worker_id = w.worker_id
    );

  -- Archived messages of every flow's queue, except those of runs still in progress.
  for flow in
    select pgmq.format_table_name(f.flow_slug, 'a') as archive_table
    from pgflow.flows as f
  loop
    if to_regclass(format('pgmq.%I', flow.archive_table)) is not null then
      execute format(
        $sql$
          delete from pgmq.%I as a
          where a.archived_at < $1
            and not exists (
              select 1
              from pgflow.runs as r
              where r.status = 'started'
                and r.run_id::text = a.message ->> 'run_id'
            )
        $sql$,
        flow.archive_table
      )
      using cutoff;
    end if;
  end loop;
end;
