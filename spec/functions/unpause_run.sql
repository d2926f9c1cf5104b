select * from pgflow._set_run_paused(unpause_run.run_id, false);
