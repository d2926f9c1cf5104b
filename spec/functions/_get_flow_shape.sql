-- placeholder: the engine issue writes the real body
select '{"steps": []}'::jsonb
