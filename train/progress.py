"""Progress on stderr (rich): the training bar (batches done, live loss, last validation
score) and `stage`, a spinner with elapsed time for the other steps that take seconds
(compression stages, export verification, C builds, emulator runs)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class TrainProgress:
    """A context manager advanced once per batch and once per epoch; silent when disabled."""

    def __init__(self, enabled: bool, epochs: int, batches_per_epoch: int, monitor: str):
        self.enabled = enabled
        self.epochs = epochs
        self._bar: Progress | None = None
        self._task = None
        self._total = epochs * batches_per_epoch
        self._monitor = monitor

    def __enter__(self) -> TrainProgress:
        if self.enabled:
            self._bar = Progress(
                TextColumn("epoch {task.fields[epoch]}/" + str(self.epochs)),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("val " + self._monitor + " {task.fields[val]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("train", total=self._total, epoch=1, loss="-", val="-")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def batch(self, loss: float) -> None:
        """One batch done with this loss."""
        if self._bar is not None:
            self._bar.update(self._task, advance=1, loss=f"{loss:.4f}")

    def epoch(self, epoch: int, val: float) -> None:
        """An epoch finished with this validation score."""
        if self._bar is not None:
            shown = f"{val:.4f}" if math.isfinite(val) else "nan"
            self._bar.update(self._task, epoch=min(epoch + 1, self.epochs), val=shown)


@contextmanager
def stage(enabled: bool, what: str) -> Iterator[None]:
    """A spinner naming `what` while the block runs, then one line with its duration."""
    if not enabled:
        yield
        return
    console = Console(stderr=True)
    t0 = time.perf_counter()
    with console.status(f"{what} ..."):
        yield
    console.print(f"[green]✓[/] {what} ({time.perf_counter() - t0:.1f} s)")
