declare
  step jsonb;
begin
  -- Missing options become NULL, so create_flow/add_step apply their own defaults.
  perform pgflow.create_flow(
    _create_flow_from_shape.p_flow_slug,
    (_create_flow_from_shape.p_shape #>> '{options,maxAttempts}')::integer,
    (_create_flow_from_shape.p_shape #>> '{options,baseDelay}')::integer,
    (_create_flow_from_shape.p_shape #>> '{options,timeout}')::integer
  );

  for step in
    select s.value
    from jsonb_array_elements(coalesce(_create_flow_from_shape.p_shape -> 'steps', '[]'::jsonb))
      with ordinality as s(value, position)
    order by s.position
  loop
    perform pgflow.add_step(
      flow_slug => _create_flow_from_shape.p_flow_slug,
      step_slug => step ->> 'slug',
      -- dependencies in the order the shape lists them
      deps_slugs => array(
        select d.slug
        from jsonb_array_elements_text(coalesce(step -> 'dependencies', '[]'::jsonb))
          with ordinality as d(slug, position)
        order by d.position
      ),
      max_attempts => (step #>> '{options,maxAttempts}')::integer,
      base_delay => (step #>> '{options,baseDelay}')::integer,
      timeout => (step #>> '{options,timeout}')::integer,
      start_delay => (step #>> '{options,startDelay}')::integer,
      step_type => step ->> 'stepType',
      -- a pattern is stored only when the shape says it is defined
      required_input_pattern => case
        when (step #>> '{requiredInputPattern,defined}')::boolean
          then step #> '{requiredInputPattern,value}'
      end,
      forbidden_input_pattern => case
        when (step #>> '{forbiddenInputPattern,defined}')::boolean
          then step #> '{forbiddenInputPattern,value}'
      end,
      when_unmet => coalesce(step ->> 'whenUnmet', 'skip'),
      when_exhausted => coalesce(step ->> 'whenExhausted', 'fail')
    );
  end loop;
end;
