"""The consume loop and its state: poll and dispatch, rebalances and drain, results, offsets and
commits, per-user order, handoff between owners."""
