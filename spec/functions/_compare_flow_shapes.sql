declare
  local_steps jsonb := coalesce(_compare_flow_shapes.p_local -> 'steps', '[]'::jsonb);
  db_steps jsonb := coalesce(_compare_flow_shapes.p_db -> 'steps', '[]'::jsonb);
  local_count integer := jsonb_array_length(local_steps);
  db_count integer := jsonb_array_length(db_steps);
  differences text[] := '{}';
  local_step jsonb;
  db_step jsonb;
  local_deps text[];
  db_deps text[];
  field text;
  prefix text;
begin
  if local_count <> db_count then
    differences := differences || format('Step count differs: %s vs %s', local_count, db_count);
  end if;

  for i in 0 .. greatest(local_count, db_count) - 1 loop
    local_step := local_steps -> i;
    db_step := db_steps -> i;
    prefix := format('Step at index %s: ', i);

    if local_step is null then
      differences := differences
        || (prefix || format('missing in first shape (second has ''%s'')', db_step ->> 'slug'));
      continue;
    end if;
    if db_step is null then
      differences := differences
        || (prefix || format('missing in second shape (first has ''%s'')', local_step ->> 'slug'));
      continue;
    end if;

    -- Scalar fields count only when both shapes carry them: shapes written before the
    -- failure modes existed lack whenUnmet/whenExhausted and must still match.
    if local_step ->> 'slug' <> db_step ->> 'slug' then
      differences := differences || (prefix || format(
        'slug differs ''%s'' vs ''%s''', local_step ->> 'slug', db_step ->> 'slug'));
    end if;
    if local_step ->> 'stepType' <> db_step ->> 'stepType' then
      differences := differences || (prefix || format(
        'type differs ''%s'' vs ''%s''', local_step ->> 'stepType', db_step ->> 'stepType'));
    end if;

    -- Dependencies compare as sets in a fixed order, whatever order each side lists them.
    local_deps := array(
      select dep from jsonb_array_elements_text(coalesce(local_step -> 'dependencies', '[]'::jsonb)) as dep
      order by dep collate "C"
    );
    db_deps := array(
      select dep from jsonb_array_elements_text(coalesce(db_step -> 'dependencies', '[]'::jsonb)) as dep
      order by dep collate "C"
    );
    if local_deps is distinct from db_deps then
      differences := differences || (prefix || format(
        'dependencies differ [%s] vs [%s]',
        array_to_string(local_deps, ', '), array_to_string(db_deps, ', ')));
    end if;

    foreach field in array array['whenUnmet', 'whenExhausted'] loop
      if local_step ->> field <> db_step ->> field then
        differences := differences || (prefix || format(
          '%s differs ''%s'' vs ''%s''', field, local_step ->> field, db_step ->> field));
      end if;
    end loop;

    -- Patterns compare as jsonb (a missing one is NULL) and print in jsonb's text form.
    foreach field in array array['requiredInputPattern', 'forbiddenInputPattern'] loop
      if local_step -> field is distinct from db_step -> field then
        differences := differences || (prefix || format(
          '%s differs ''%s'' vs ''%s''', field,
          coalesce((local_step -> field)::text, ''), coalesce((db_step -> field)::text, '')));
      end if;
    end loop;
  end loop;

  return differences;
end;
