"""The sweep progress display shared by the executors (rich only: no Keras in the driver)."""

from __future__ import annotations

# Run statuses that count as finished (sweep.py takes them from here).
FINISHED = ("completed", "diverged")


class SweepDisplay:
    """Runs done / running / queued / failed and an ETA: a live rich bar on a terminal.

    Off a terminal it stays quiet (the sweep prints one line per finished run itself) apart from
    `note`s such as retries.
    """

    def __init__(self, total: int, console=None, label: str = "runs"):
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.total, self.done, self.failed, self.retried = total, 0, 0, 0
        self.running, self.queued = 0, total
        self.progress = None
        if self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn(label),
                BarColumn(bar_width=20),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(label, total=total, status=self._status())

    def _status(self) -> str:
        parts = [f"running {self.running}", f"queued {self.queued}", f"failed {self.failed}"]
        if self.retried:
            parts.append(f"retried {self.retried}")
        return "  ".join(parts)

    def update(self, running: int, queued: int) -> None:
        self.running, self.queued = running, queued
        if self.progress is not None:
            self.progress.update(self.task, completed=self.done, status=self._status())

    def finished(self, result) -> None:
        self.done += 1
        self.failed += result.status not in FINISHED
        if self.progress is not None:
            self.progress.update(self.task, completed=self.done, status=self._status())

    def retry(self, text: str) -> None:
        self.retried += 1
        self.note(text)

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True, markup=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
