"""Launching a ROAR grid: the plan grouped into jobs (:mod:`launch.jobs`), a Slurm backend
(:mod:`launch.slurm`) and the command line (``python launch/grid.py --config=configs/sst.py``)."""
