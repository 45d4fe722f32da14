"""The worker: loads a version's bundle, runs its initializer once, then takes and runs jobs."""
