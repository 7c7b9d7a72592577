"""Experiment tracking of a run: TensorBoard events always (events), MLflow when asked for
(mlflow_log).
"""
