"""The experiment runner: `train`, `sweep` and `plot` as library functions.

Keras-free at import; `gdeeper.runner.train.train(config, run_dir)` imports the backend.
"""
