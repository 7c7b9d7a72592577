"""The files of run and sweep directories: their names and layout (rundir), reading them
as untrusted input (run_files), manifest.json (manifest), a sweep's results.csv rows (results).
"""
