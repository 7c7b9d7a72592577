"""Ctrl-C and SIGTERM from the first line of `gdeeper` to the last (runner/control/signals.py), in
child processes whose signal dispositions are set by the test, not inherited from the shell
that runs pytest (a background job inherits "ignore SIGINT")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def default_signals() -> None:
    """preexec_fn: the child starts with SIGINT and SIGTERM at their defaults."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def ignored_signals() -> None:
    """preexec_fn: the child inherits SIGINT and SIGTERM ignored (`cmd &` in a script)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def python(code: str, preexec=default_signals, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-c", code],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec,
    )


@pytest.mark.parametrize(("sig", "code", "word"), [("SIGINT", 130, "interrupted"),
                                                   ("SIGTERM", 143, "terminated")])  # fmt: skip
def test_a_stop_while_the_command_imports_is_one_line_and_its_exit_code(sig, code, word):
    """The console script installs deferring handlers before typer and pydantic load; `main`
    raises the remembered stop first thing: no traceback, no KeyError, exit 130/143."""
    result = python(
        "import os, signal, sys\n"
        "sys.argv = ['gdeeper', 'experiments']\n"
        "from gdeeper.runner.control import signals\n"
        "signals.install(defer=True)\n"
        f"os.kill(os.getpid(), signal.{sig})\n"
        "import gdeeper.cli\n"
        "gdeeper.cli.main()\n"
    )
    assert result.returncode == code, result.stderr
    assert result.stderr.strip().splitlines() == [f"gdeeper: error: {word}" + (
        " (SIGTERM)" if sig == "SIGTERM" else "")]  # fmt: skip
    assert result.stdout == ""  # the command did not run


# Where a traceback may stop before gdeeper's handlers exist: `__main__` line 3 imports them.
BEFORE_INSTALL = tuple(
    f'{path}"' + tail
    for path, tail in [
        (os.path.join("gdeeper", "__init__.py"), ""),
        (os.path.join("gdeeper", "runner", "__init__.py"), ""),
        (os.path.join("gdeeper", "runner", "signals.py"), ""),
        (os.path.join("gdeeper", "__main__.py"), ", line 3,"),
    ]
)


@pytest.mark.parametrize("delay", [0.1, 0.3, 0.8])
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_in_the_first_second_of_a_real_process(tmp_path, delay, sig, code):
    """`python -m gdeeper runs` stopped while it imports: one line, 130/143, whatever the
    moment (it was a KeyboardInterrupt traceback, or a bare -15, before). Only a signal before
    the interpreter reaches gdeeper's first line (~40 ms) has the OS default: killed, silent."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gdeeper", "runs", str(tmp_path)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
    )
    time.sleep(delay)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    if process.returncode == 0:  # it had already finished listing: nothing to check
        return
    frames = [line for line in stderr.splitlines() if line.strip().startswith("File ")]
    ours = [f for f in frames if "gdeeper" in f]
    before_install = all(any(place in f for place in BEFORE_INSTALL) for f in ours)
    if process.returncode == -sig and not stderr:  # before Python ran a line: the OS default
        return
    if sig == signal.SIGINT and process.returncode in (1, -sig) and before_install:
        # Python's own KeyboardInterrupt while the interpreter starts (runpy, importlib, the
        # package's __init__ and the import of the signals module, ~70 ms) before __main__
        # installs gdeeper's handlers: a slow, loaded machine is still there at 0.1 s. Python
        # ends such a run with 1, or by re-raising SIGINT on itself (-2).
        assert "KeyboardInterrupt" in stderr
        return
    assert process.returncode == code, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gdeeper: "), stderr
    assert "Traceback" not in stderr


def test_an_inherited_ignore_is_honoured():
    """A parent's "ignore SIGINT/SIGTERM" stays: gdeeper never un-ignores a signal."""
    result = python(
        "import os, signal\n"
        "from gdeeper.runner.control import signals\n"
        "signals.install()\n"
        "assert signals.handle_sigterm() is None\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "print('alive', signals.pending())\n",
        preexec=ignored_signals,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "alive None"


def test_a_stop_swallowed_by_a_gc_callback_is_raised_again():
    """JAX's `_xla_gc_callback` printed "Exception ignored" and the SIGTERM was lost (the run
    completed, exit 0): the stop stays pending and `check()` raises it at the next batch."""
    result = python(
        "import gc, os, signal\n"
        "from gdeeper.runner.control import signals\n"
        "signals.install()\n"
        "def callback(phase, info):\n"
        "    if phase == 'start':\n"
        "        gc.callbacks.remove(callback)\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        for _ in range(1000): pass\n"
        "gc.callbacks.append(callback)\n"
        "gc.collect()\n"
        "print('swallowed', signals.pending() == signal.SIGTERM)\n"
        "try:\n"
        "    signals.check()\n"
        "except signals.Terminated:\n"
        "    print('raised', signals.exit_code())\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["swallowed", "True", "raised", "143"], result.stderr
    assert "Exception ignored" in result.stderr  # what Python does with it: the reason


def test_exit_codes_have_one_owner():
    from gdeeper.runner.control import signals

    assert signals.exit_code(signals.Terminated()) == 143
    assert signals.exit_code(signals.Interrupted()) == 130
    assert signals.exit_code(KeyboardInterrupt()) == 130
    assert signals.describe(143) == "terminated (SIGTERM)"
