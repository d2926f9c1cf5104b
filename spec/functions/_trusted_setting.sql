-- A session may choose its own value (SET, set_config, connection options) only when it
-- could do what the setting unlocks anyway: an admin, the owner, a superuser. Any other
-- session gets the database's configuration from the catalog (ALTER DATABASE … SET,
-- which only the database owner or a superuser can change). Role-level settings are
-- never read: a role may change its own.
select case
  when pgflow._session_is_admin() then current_setting(_trusted_setting.name, true)
  else (
    select substr(c.entry, length(_trusted_setting.name) + 2)
    from pg_catalog.pg_db_role_setting as s
    cross join unnest(s.setconfig) as c(entry)
    where s.setdatabase = (
        select d.oid from pg_catalog.pg_database as d where d.datname = current_database()
      )
      and s.setrole = 0
      and starts_with(c.entry, _trusted_setting.name || '=')
  )
end
