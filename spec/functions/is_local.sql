-- Local (development) mode: the Supabase CLI's fixed JWT secret, as in pgflow, or the
-- plain-PostgreSQL switch `pgflow.local = on` (true/1 are accepted as well). Unset
-- settings read as NULL, which counts as false. Local mode lets ensure_flow_compiled drop
-- a flow's runs, so the settings are read as _trusted_setting says: an unprivileged
-- session cannot switch it on with SET.
select coalesce(
  pgflow._trusted_setting('app.settings.jwt_secret')
    = 'super-secret-jwt-token-with-at-least-32-characters-long',
  false
)
or coalesce(
  lower(pgflow._trusted_setting('pgflow.local')) in ('on', 'true', '1'),
  false
)
