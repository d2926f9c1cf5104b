declare
  v_state pgflow.step_states;
  v_run pgflow.runs;
begin
  -- The step fails with the error, then the run; step:failed is announced before
  -- run:failed, which carries the step's error. The caller holds the run locked.
  update pgflow.step_states as ss
  set status = 'failed',
      failed_at = now(),
      error_message = _fail_step_and_run.error_message
  where ss.run_id = _fail_step_and_run.run_id
    and ss.step_slug = _fail_step_and_run.step_slug
  returning ss.* into v_state;

  update pgflow.runs as r
  set status = 'failed', failed_at = now()
  where r.run_id = _fail_step_and_run.run_id
  returning r.* into v_run;

  perform pgflow._emit_step_failed(
    v_state.run_id,
    v_state.step_slug,
    v_state.status,
    v_state.error_message,
    v_state.failed_at
  );
  perform pgflow._emit_run_failed_with_error(
    v_run.run_id,
    v_run.flow_slug,
    v_run.status,
    v_run.failed_at,
    v_state.error_message
  );

  -- Every other queued or started task of the run is cancelled, its message archived.
  perform pgflow._cancel_run_tasks(_fail_step_and_run.run_id);
end;
