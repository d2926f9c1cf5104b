select coalesce(
  current_setting('app.settings.jwt_secret', true)
    = 'super-secret-jwt-token-with-at-least-32-characters-long',
  false
) or coalesce(current_setting('pgflow.local', true) in ('on', 'true', '1'), false)
