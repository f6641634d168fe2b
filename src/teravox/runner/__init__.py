"""Executors of the stage graph: local processes or SLURM job arrays."""
