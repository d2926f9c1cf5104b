-- session_user is the role the session logged in as: SET ROLE cannot change it, and
-- SECURITY DEFINER functions (which change current_user to their owner) do not either,
-- so it names the real caller inside the engine's functions. pg_has_role counts
-- superusers as members of every role.
select pg_catalog.pg_has_role(session_user, 'pgflow_admin', 'member')
  or pg_catalog.pg_has_role(
    session_user,
    (select n.nspowner from pg_catalog.pg_namespace as n where n.nspname = 'pgflow'),
    'member'
  )
