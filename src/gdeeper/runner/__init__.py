"""The experiment runner: `train`, `sweep` and `plot` as library functions, in six parts.

- `control`: how a gdeeper process behaves: the backend check, the 130/143 exit codes, the
  run directory's lock, child processes (one owner each).
- `records`: the files of run and sweep directories.
- `tracking`: TensorBoard events and MLflow.
- `analysis`: plots, reports, statistics, listing and comparing runs.
- `session`: one training session, from `gdeeper train`'s request to
  `session.train.train(config, run_dir)`.
- `sweeps`: sweep specs, plans, executors and `run_sweep`.

Keras-free at import; `gdeeper.runner.session.train.train(config, run_dir)` imports the backend
(docs/architecture.md).
"""
