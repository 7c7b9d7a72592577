"""Sweeps: the spec and its plan (spec), from the typed request to a planned sweep (start),
running it (sweep) and the executors that run its runs (executors: local processes, Ray).
"""
