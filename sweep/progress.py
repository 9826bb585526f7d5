"""The live progress line of a sweep: cells done, failed and running, and an ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Redraws one line on a terminal; elsewhere prints a line whenever the counts change."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total, self.width = total, width
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()
        self.done = self.failed = self.running = 0
        self._last = ""

    def line(self) -> str:
        finished = self.done + self.failed
        filled = int(self.width * finished / self.total) if self.total else self.width
        elapsed = time.monotonic() - self.t0
        left = self.total - finished
        eta = f"{elapsed / finished * left:.0f}s" if finished else "?"
        bar = "#" * filled + "." * (self.width - filled)
        return (f"[{bar}] {finished}/{self.total}: {self.done} done, {self.failed} failed, "
                f"{self.running} running, ETA {eta}")  # fmt: skip

    def update(self, *, done: int = 0, failed: int = 0, running: int | None = None) -> None:
        self.done += done
        self.failed += failed
        if running is not None:
            self.running = running
        text = self.line()
        if self.stream.isatty():
            self.stream.write("\r" + text)
        elif text.split(", ETA")[0] != self._last.split(", ETA")[0]:
            self.stream.write(text + "\n")
        self._last = text
        self.stream.flush()

    def close(self) -> None:
        if self.stream.isatty():
            self.stream.write("\n")
            self.stream.flush()
