-- The structure ensure_flow_compiled compares: steps in step_index order with their
-- type, dependencies (sorted by code point, like the DSL sorts them), failure modes and
-- condition patterns. Options are deliberately left out, so tuning them never counts
-- as a shape change. An unknown flow has the shape {"steps": []}.
select jsonb_build_object(
  'steps',
  coalesce(
    jsonb_agg(
      jsonb_build_object(
        'slug', s.step_slug,
        'stepType', s.step_type,
        'dependencies', coalesce(
          (
            select jsonb_agg(d.dep_slug order by d.dep_slug collate "C")
            from pgflow.deps as d
            where d.flow_slug = s.flow_slug
              and d.step_slug = s.step_slug
          ),
          '[]'::jsonb
        ),
        'whenUnmet', s.when_unmet,
        'whenExhausted', s.when_exhausted,
        'requiredInputPattern', case
          when s.required_input_pattern is null then jsonb_build_object('defined', false)
          else jsonb_build_object('defined', true, 'value', s.required_input_pattern)
        end,
        'forbiddenInputPattern', case
          when s.forbidden_input_pattern is null then jsonb_build_object('defined', false)
          else jsonb_build_object('defined', true, 'value', s.forbidden_input_pattern)
        end
      )
      order by s.step_index
    ),
    '[]'::jsonb
  )
)
from pgflow.steps as s
where s.flow_slug = _get_flow_shape.p_flow_slug
