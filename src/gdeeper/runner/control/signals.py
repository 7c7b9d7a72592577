"""Ctrl-C and SIGTERM: one rule for the whole `gdeeper` process, one owner of the exit codes.

The rule (docs/reliability.md, "Signals"):

- `install()` is the first thing the `gdeeper` command does (before typer, pydantic or Keras are
  imported): from then on SIGINT raises `Interrupted` and SIGTERM raises `Terminated`, both
  `KeyboardInterrupt`s, in the main thread, so every phase of a session (parsing, loading Keras,
  training, writing the summary) stops the same way, with exit code 130 or 143.
- A signal that the parent process set to be *ignored* stays ignored, for the whole process
  (a background job of a non-interactive shell inherits "ignore SIGINT": Ctrl-C in the terminal
  is not meant for it). gdeeper never un-ignores a signal.
- A stop is remembered until someone handles it (`handled()`): a `KeyboardInterrupt` raised
  where Python cannot deliver it (inside a garbage-collector callback, such as JAX's
  `_xla_gc_callback`, it is printed as "Exception ignored in ..." and dropped) is raised again
  at the next `check()` (after Keras loads, at every training batch), so it is never swallowed.

`exit_code(stop)` is the only place that maps a stop to 130 or 143.
"""

from __future__ import annotations

import contextlib
import signal

INTERRUPTED, TERMINATED = 130, 143


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) arrived: exit code 130."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the session stops as on Ctrl-C (exit code 143 instead of 130)."""


_PENDING: int | None = None  # the signal of a stop not yet handled
_DEFER = False  # while the command's modules import: remember the stop, raise it in main()


def _on_signal(signum, frame):
    global _PENDING
    _PENDING = signum
    if _DEFER:
        return
    raise Terminated() if signum == signal.SIGTERM else Interrupted()


def _install_one(signum) -> object | None:
    """Our handler for `signum` unless the signal is ignored; the previous handler, or None
    (outside the main thread, or left ignored)."""
    try:
        current = signal.getsignal(signum)
        if current == signal.SIG_IGN:
            return None  # inherited "ignore" is honoured (module doc)
        if current is _on_signal:
            return current
        return signal.signal(signum, _on_signal)
    except ValueError:  # not the main thread: nothing to install
        return None


def install(defer: bool = False) -> None:
    """SIGINT and SIGTERM raise `Interrupted` / `Terminated` from now on (unless ignored).
    `defer`: only remember them, until `install()` is called again (the console script's
    imports, before `main` can catch anything: `main` raises the stop first thing)."""
    global _DEFER
    _DEFER = defer
    _install_one(signal.SIGINT)
    _install_one(signal.SIGTERM)


def handle_sigterm():
    """SIGTERM raises `Terminated` from now on (unless it is ignored); returns the handler it
    replaced, for `restore_sigterm` (None when nothing was replaced)."""
    return _install_one(signal.SIGTERM)


def restore_sigterm(previous) -> None:
    if previous is not None:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, previous)


def ignore() -> None:
    """Ignore SIGINT and SIGTERM from now on (the process is about to exit with its code)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):
            signal.signal(signum, signal.SIG_IGN)


def exit_code(stop: BaseException | None = None) -> int:
    """130 for Ctrl-C, 143 for SIGTERM: of `stop`, else of the pending signal."""
    if isinstance(stop, Terminated):
        return TERMINATED
    if stop is None and _PENDING == signal.SIGTERM:
        return TERMINATED
    return INTERRUPTED


def describe(code: int) -> str:
    return "terminated (SIGTERM)" if code == TERMINATED else "interrupted"


def settle(stop: BaseException | None = None) -> tuple[int, str]:
    """A caught stop, acted on: its exit code (130 or 143) and how to say it ("interrupted")."""
    code = exit_code(stop)
    handled()
    return code, describe(code)


def pending() -> int | None:
    """The signal of a stop that nobody has handled yet, or None."""
    return _PENDING


def handled() -> None:
    """The stop was caught and acted on: `check()` no longer raises it."""
    global _PENDING
    _PENDING = None


def check() -> None:
    """Raise the pending stop again (one that Python dropped inside a callback)."""
    if _PENDING is not None:
        raise Terminated() if _PENDING == signal.SIGTERM else Interrupted()
