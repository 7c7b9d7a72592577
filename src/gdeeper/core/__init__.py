"""The library itself: the meta-layers, their gate and depth policy, growth between steps,
saving, export and telemetry. `gdeeper/__init__.py` re-exports the public names lazily."""
