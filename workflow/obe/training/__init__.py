"""What both trainers share (``obe.train`` and ``obe.engines.trl_backend``).

* :mod:`obe.training.run` -- :class:`TrainingRun`, the run's lifecycle and its only writer;
* :mod:`obe.training.config` -- the run config :class:`TrainConfig`, its help text and CLI parser;
* :mod:`obe.training.callbacks` -- user code called at fixed moments of a run;
* :mod:`obe.training.metrics` -- the documented metric vocabulary and the per-step rollout statistics;
* :mod:`obe.training.run_dir` -- the run folder: resume checks, set-aside outputs, done.json;
* :mod:`obe.training.numerics` -- data order, LR schedule, memory.
"""
