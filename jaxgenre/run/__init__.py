"""A training run on disk: its config (checks, added keys, what a restart may change), the
workdir written and read back (`rundir`), Orbax checkpoints and preemption."""
