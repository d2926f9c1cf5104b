declare
  cutoff constant timestamptz := now() - prune_data_older_than_batched.retention_interval;
  size constant integer := prune_data_older_than_batched.batch_size;
  batches integer := 0;
  batch_rows bigint;
  n bigint;
  n_states bigint;
  n_tasks bigint;
  runs_n bigint := 0;
  states_n bigint := 0;
  tasks_n bigint := 0;
  workers_n bigint := 0;
  archives text[];
  archive_n bigint[];
begin
  if size is null or size < 1 then
    raise exception 'batch_size must be a positive integer (got %)', coalesce(size::text, 'null');
  end if;
  if prune_data_older_than_batched.max_batches is not null
     and prune_data_older_than_batched.max_batches < 1 then
    raise exception 'max_batches must be a positive integer or null (got %)',
      prune_data_older_than_batched.max_batches;
  end if;

  -- The archive tables of the flows whose queue still exists (pgmq lower-cases the names).
  select coalesce(array_agg(t.archive_table order by t.archive_table), '{}')
  into archives
  from (
    select pgmq.format_table_name(f.flow_slug, 'a') as archive_table
    from pgflow.flows as f
  ) as t
  where to_regclass(format('pgmq.%I', t.archive_table)) is not null;
  archive_n := array_fill(0::bigint, array[greatest(cardinality(archives), 1)]);

  loop
    exit when batches = coalesce(prune_data_older_than_batched.max_batches, batches + 1);
    batches := batches + 1;
    batch_rows := 0;

    -- At most `size` finished runs, locked so a concurrent retry_run or prune waits or skips;
    -- the status is checked again on the locked row. A run in progress is never chosen.
    with old_runs as (
      select r.run_id
      from pgflow.runs as r
      where (r.status = 'completed' and r.completed_at < cutoff)
         or (r.status = 'failed' and r.failed_at < cutoff)
         or (r.status = 'cancelled' and r.cancelled_at < cutoff)
      limit size
      for update skip locked
    ),
    old_tasks as (
      delete from pgflow.step_tasks as t
      using old_runs as o
      where t.run_id = o.run_id
      returning 1
    ),
    old_states as (
      delete from pgflow.step_states as s
      using old_runs as o
      where s.run_id = o.run_id
      returning 1
    ),
    gone as (
      delete from pgflow.runs as r
      using old_runs as o
      where r.run_id = o.run_id
      returning 1
    )
    select (select count(*) from gone), (select count(*) from old_states),
           (select count(*) from old_tasks)
    into n, n_states, n_tasks;
    runs_n := runs_n + n;
    states_n := states_n + n_states;
    tasks_n := tasks_n + n_tasks;
    batch_rows := n + n_states + n_tasks;

    -- Workers silent since before the cutoff, unless a task that is kept still names them.
    with old_workers as (
      select w.worker_id
      from pgflow.workers as w
      where w.last_heartbeat_at < cutoff
        and not exists (
          select 1 from pgflow.step_tasks as t where t.last_worker_id = w.worker_id
        )
      limit size
      for update skip locked
    )
    delete from pgflow.workers as w
    using old_workers as o
    where w.worker_id = o.worker_id;
    get diagnostics n = row_count;
    workers_n := workers_n + n;
    batch_rows := batch_rows + n;

    -- Archived messages older than the cutoff, at most `size` per flow's archive table,
    -- except those of runs still in progress.
    for i in 1 .. cardinality(archives) loop
      execute format(
        $sql$
          delete from pgmq.%1$I as a
          where a.msg_id in (
            select o.msg_id
            from pgmq.%1$I as o
            where o.archived_at < $1
              and not exists (
                select 1
                from pgflow.runs as r
                where r.status = 'started'
                  and r.run_id::text = o.message ->> 'run_id'
              )
            limit $2
            for update skip locked
          )
        $sql$,
        archives[i]
      )
      using cutoff, size;
      get diagnostics n = row_count;
      archive_n[i] := archive_n[i] + n;
      batch_rows := batch_rows + n;
    end loop;

    exit when batch_rows = 0;
  end loop;

  -- One row per table, the four engine tables first, then the archives by name.
  return query
    select t.name, t.removed
    from (
      values ('pgflow.runs', runs_n, 1::bigint), ('pgflow.step_states', states_n, 2),
             ('pgflow.step_tasks', tasks_n, 3), ('pgflow.workers', workers_n, 4)
      union all
      select 'pgmq.' || a.archive_table, archive_n[a.ord], 4 + a.ord
      from unnest(archives) with ordinality as a (archive_table, ord)
    ) as t (name, removed, ord)
    order by t.ord;
end;
