"""Experiments built on the library, apart from its core: they choose settings, run many fine-tuning
runs and write logs that chapters read.

- :mod:`textnorm.experiments.runner`   jobs in worker processes of one torch thread each (dying with their parent)
- :mod:`textnorm.experiments.overopt`  the over-optimisation grid (``default_grid()``: params/overopt_cpu.yaml, the one settings source
  of the grid and the GPU parameter file): runs, best-of-n pool, logs, replay
"""
