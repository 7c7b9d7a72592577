"""Reading finished runs and sweeps: plots (plot, signal_plot, titles), statistics (stats),
reports (report, study_report, data_depth; the last two also `python -m`), listing and comparing
runs (runs) and the terminal display (display).
"""
