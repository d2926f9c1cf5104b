-- placeholder: the engine issue writes the real body
select null::text, null::uuid, null::text, null::jsonb, null::bigint, null::integer, null::jsonb
where false
