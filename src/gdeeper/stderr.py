"""Quiet loading of a backend: the INFO/WARNING lines TensorFlow, absl and CUDA print to stderr
as they load would precede every one-line error of the CLI. Support layer: used by the runner
(`import keras`) and by the experiments (a user's module that imports a backend at its top)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

# Lines TensorFlow's C++ logging writes while it loads, before absl is initialised: INFO and
# WARNING records (`I0000 00:00:...`, `W0000 ...`) and absl's note about them; and the ERROR
# record of a machine with CUDA libraries but no GPU driver (`E0000 ... failed call to cuInit`),
# which only says that TensorFlow runs on the CPU.
_LOAD_NOISE = re.compile(
    r"^([IW]\d{4} [\d:]+\.\d+ +\d+ |WARNING: All log messages before absl"
    r"|E\d{4} [\d:]+\.\d+ +\d+ cuda_\w+\.cc:\d+\] failed call to cuInit)"
)


@contextlib.contextmanager
def quiet_backend_load():
    """Within the block, the INFO/WARNING lines a backend prints to stderr as it loads (absl,
    cudart, cuInit on a machine without a GPU) are dropped; other stderr lines are passed on
    when the block ends. Used for `import keras` and for a user's module that imports a
    backend at its top (`--model`/`--data`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any backend is imported
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to redirect
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            kept = [line for line in text.splitlines() if not _LOAD_NOISE.match(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()
