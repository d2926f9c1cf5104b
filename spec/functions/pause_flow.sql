select * from pgflow._set_flow_paused(pause_flow.flow_slug, true);
