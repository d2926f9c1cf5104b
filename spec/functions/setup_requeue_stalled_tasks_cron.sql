declare
  schedule_fn constant regprocedure := to_regprocedure('cron.schedule(text, text, text)');
  unschedule_fn constant regprocedure := to_regprocedure('cron.unschedule(text)');
  job_id bigint;
begin
  if schedule_fn is null or unschedule_fn is null then
    raise exception 'pg_cron is not installed in this database: %',
      'pgweave workers call pgflow.requeue_stalled_tasks() periodically, so no schedule is '
      'needed; to run it from the database as well, install pg_cron '
      '(shared_preload_libraries = ''pg_cron'', then create extension pg_cron) and call '
      'pgflow.setup_requeue_stalled_tasks_cron() again';
  end if;

  -- This function runs as its owner: only call a cron schema that pg_cron installed (or a
  -- superuser or the owner created), never functions some other role planted under that
  -- name.
  if exists (
    select 1
    from pg_catalog.pg_proc as p
    join pg_catalog.pg_roles as owner on owner.oid = p.proowner
    where p.oid in (schedule_fn, unschedule_fn)
      and not owner.rolsuper
      and owner.rolname <> current_user
      and not exists (
        select 1
        from pg_catalog.pg_depend as d
        join pg_catalog.pg_extension as e on e.oid = d.refobjid
        where d.classid = 'pg_catalog.pg_proc'::regclass
          and d.objid = p.oid
          and d.deptype = 'e'
          and e.extname = 'pg_cron'
      )
  ) then
    raise exception 'pg_cron is not installed in this database: %',
      'cron.schedule exists but belongs neither to the pg_cron extension nor to a '
      'superuser; refusing to call it';
  end if;

  begin
    perform cron.unschedule('pgflow_requeue_stalled_tasks');
  exception when others then
    null; -- not scheduled yet
  end;

  job_id := cron.schedule(
    'pgflow_requeue_stalled_tasks',
    setup_requeue_stalled_tasks_cron.cron_interval,
    'select pgflow.requeue_stalled_tasks()'
  );

  return format(
    'Scheduled pgflow_requeue_stalled_tasks (every %s, job_id=%s)',
    setup_requeue_stalled_tasks_cron.cron_interval,
    job_id
  );
end;
