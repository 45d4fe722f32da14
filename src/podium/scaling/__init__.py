"""Where workers run and how many: the autoscaler, the leader, and the worker backends."""
