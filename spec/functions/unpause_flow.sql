select * from pgflow._set_flow_paused(unpause_flow.flow_slug, false);
