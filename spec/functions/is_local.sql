-- Local (development) mode: the Supabase CLI's fixed JWT secret, as in pgflow, or the
-- plain-PostgreSQL switch `pgflow.local = on` (true/1 are accepted as well). Unset
-- settings read as NULL, which counts as false.
select coalesce(
  current_setting('app.settings.jwt_secret', true)
    = 'super-secret-jwt-token-with-at-least-32-characters-long',
  false
)
or coalesce(
  lower(current_setting('pgflow.local', true)) in ('on', 'true', '1'),
  false
)
