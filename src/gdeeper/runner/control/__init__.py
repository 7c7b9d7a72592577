"""How a gdeeper process behaves, one owner per rule: the backend check (backend), the
exit codes 130/143 of a stop (signals), the run directory's lock (lock), child processes
(processes).
"""
