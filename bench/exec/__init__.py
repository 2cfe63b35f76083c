"""Where runs happen: in this process, a local worker pool, a SLURM array (submitit) or DDP
ranks; the one plugin loader every process uses."""
