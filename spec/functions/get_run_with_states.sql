select jsonb_build_object(
  'run', to_jsonb(r),
  'steps', coalesce(
    (
      select jsonb_agg(to_jsonb(s) order by st.step_index, s.step_slug)
      from pgflow.step_states as s
      join pgflow.steps as st on st.flow_slug = s.flow_slug and st.step_slug = s.step_slug
      where s.run_id = r.run_id
    ),
    '[]'::jsonb
  )
)
from pgflow.runs as r
where r.run_id = get_run_with_states.run_id
