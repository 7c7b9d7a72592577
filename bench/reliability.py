"""The reliability corpus (issue #15): real `gdeeper` invocations against bad input and faults.

Every case runs `python -m gdeeper ...` as a process in a fresh folder and checks its exit code,
a pattern in what it printed, and an invariant on the files (nothing written when it refuses to
start; no lost or duplicated metrics row; no code run from a model file). Most cases fail before
Keras loads (about a second each); a few chains train the tiny XOR network for real (signals,
concurrent sessions, resume). One line per case, then `N passed, N failed`:

    python bench/reliability.py            # make reliability
    python bench/reliability.py -k lock    # the cases whose name holds "lock"

Exit code 0 when every case passed. About 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from reliability_cases import (
    argument_cases,
    config_cases,
    data_cases,
    mlflow_cases,
    model_file_cases,
    output_cases,
    run_dir_cases,
    run_file_cases,
    sweep_cases,
    sweep_spec_cases,
    user_code_cases,
    user_training_cases,
)
from reliability_chains import chains

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@dataclasses.dataclass
class Case:
    """One invocation `gdeeper ARGS` in a fresh folder, after `setup(folder)`."""

    name: str
    args: list
    code: int
    pattern: str = ""  # a regex that must match stderr (one-line errors: that line)
    setup: Callable[[Path], None] | None = None
    check: Callable[[Path, subprocess.CompletedProcess], str | None] | None = None
    one_line: bool = True  # an error: exactly one line on stderr, "gdeeper: error: ..."
    timeout: float = 90


def default_signals() -> None:
    """preexec_fn: SIGINT and SIGTERM at their defaults in every case's process, whatever this
    script inherited (`make reliability &` starts with SIGINT ignored, which gdeeper honours)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def gdeeper(args, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gdeeper", *map(str, args)],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=default_signals,
    )


def snapshot(folder: Path) -> dict[str, float]:
    """The files under `folder` and their times; a run directory's `.lock` (created by a resume
    before it reads anything) does not count as written. A tree too deep to walk (a case's
    3,000-level folder) is one entry."""
    try:
        return {
            str(p.relative_to(folder)): p.stat().st_mtime if p.is_file() else 0.0
            for p in folder.rglob("*")
            if p.name != ".lock"
        }
    except (RecursionError, OSError):
        return {"(too deep to walk)": 0.0}


def problem_of(case: Case, result: subprocess.CompletedProcess, folder: Path, before) -> str:
    """What went wrong with `case` ("" when it held)."""
    if result.returncode != case.code:
        tail = (result.stderr.strip().splitlines() or [""])[-1][:200]
        return f"exit {result.returncode}, expected {case.code}: {tail}"
    err = result.stderr.strip()
    if "Traceback" in err:
        return "a traceback on stderr"
    if case.code != 0 and case.one_line:
        lines = err.splitlines()
        if len(lines) != 1 or not lines[0].startswith("gdeeper: "):
            return f"{len(lines)} lines on stderr, expected one 'gdeeper: ...' line"
        if len(lines[0]) > 400:
            return f"an error line of {len(lines[0])} characters"
    if case.pattern and not re.search(case.pattern, err):
        return f"stderr lacks /{case.pattern}/: {err[-200:]}"
    if case.code == 2 and snapshot(folder) != before:
        new = sorted(set(snapshot(folder)) ^ set(before)) or ["(a file changed)"]
        return f"a refused start wrote files: {new[:3]}"
    if case.check is not None:
        return case.check(folder, result) or ""
    return ""


def remove_tree(top: Path) -> None:
    """`shutil.rmtree`, also for a folder thousands of levels deep (rmtree recurses): the rest
    is removed depth-first by relative names, with no recursion and no long paths."""
    try:
        shutil.rmtree(top, ignore_errors=True)
        return
    except RecursionError:
        pass
    here = os.getcwd()
    names: list[str] = []
    try:
        os.chdir(top)
        while True:
            entries = os.listdir(".")
            folders = [e for e in entries if os.path.isdir(e) and not os.path.islink(e)]
            if folders:
                os.chdir(folders[0])
                names.append(folders[0])
                continue
            for entry in entries:
                os.unlink(entry)
            if not names:
                break
            os.chdir("..")
            os.rmdir(names.pop())
    finally:
        os.chdir(here)
    shutil.rmtree(top, ignore_errors=True)


def run_case(case: Case, root: Path) -> tuple[bool, str, float]:
    folder = Path(tempfile.mkdtemp(dir=root))
    started = time.monotonic()
    try:
        if case.setup is not None:
            case.setup(folder)
        before = snapshot(folder)
        result = gdeeper(case.args, folder, case.timeout)
        problem = problem_of(case, result, folder, before)
    except subprocess.TimeoutExpired:
        problem = f"no answer within {case.timeout:.0f} s"
    except Exception as error:  # the corpus itself broke on this case
        problem = f"{type(error).__name__}: {error}"
    finally:
        remove_tree(folder)
    return not problem, problem, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only the cases whose name holds this")
    parser.add_argument("--no-training", action="store_true", help="skip the real trainings")
    options = parser.parse_args()
    groups = [
        ("arguments", argument_cases(Case)),
        ("configs", config_cases(Case)),
        ("data files", data_cases(Case)),
        ("outputs", output_cases(Case)),
        ("run directories", run_dir_cases(Case)),
        ("model files", [] if options.no_training else model_file_cases(Case)),
        ("sweeps", [] if options.no_training else sweep_cases(Case)),
        ("run files", run_file_cases(Case)),
        ("user code", user_code_cases(Case)),
        ("user code trained", [] if options.no_training else user_training_cases(Case)),
        ("mlflow", mlflow_cases(Case)),
        ("sweep specs", sweep_spec_cases(Case)),
    ]
    passed = failed = 0
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="gdeeper-reliability-"))
    try:
        for group, cases in groups:
            for case in cases:
                if options.k not in f"{group}/{case.name}":
                    continue
                ok, problem, seconds = run_case(case, root)
                passed, failed = passed + ok, failed + (not ok)
                mark = "PASS" if ok else "FAIL"
                print(f"{mark} {group}/{case.name} ({seconds:.1f} s){'' if ok else ': ' + problem}")
                sys.stdout.flush()
        if not options.no_training:
            for name, step in chains(gdeeper, root, ENV):
                if options.k not in f"signals and sessions/{name}":
                    continue
                t0 = time.monotonic()
                try:
                    problem = step()
                except Exception as error:
                    problem = f"{type(error).__name__}: {error}"
                ok = not problem
                passed, failed = passed + ok, failed + (not ok)
                mark = "PASS" if ok else "FAIL"
                seconds = time.monotonic() - t0
                print(
                    f"{mark} signals and sessions/{name} ({seconds:.1f} s)"
                    f"{'' if ok else ': ' + problem}"
                )
                sys.stdout.flush()
    finally:
        remove_tree(root)
    print(f"{passed} passed, {failed} failed ({time.monotonic() - started:.0f} s)")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
