select * from pgflow._set_run_paused(pause_run.run_id, true);
