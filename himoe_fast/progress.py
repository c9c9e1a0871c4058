"""The one progress reporter of the project (data preparation, training, sweeps, predict, bench).

Policy: a live rich bar on stderr when stderr is a terminal; elsewhere (logs, pipes, CI), where a
bar would only be drawn once at the end, plain lines on stdout instead: at most one every
``every_s`` seconds (or one per update with ``every_s=0``) and a closing line with the wall time.
``enabled=False`` prints nothing at all (ranks other than 0, nested runs, tests).

Library code does not build bars. It takes ``progress: ProgressCallback | None`` and calls
``progress(done, total, label)``; the caller (usually the CLI) passes a :class:`Reporter`, which is
such a callback::

    with Reporter("preparing windows", total=n) as rep:
        prepare(..., progress=rep)          # library calls rep(done, total, label)
        rep.advance(label="subject 3")      # or advance by hand
"""

from __future__ import annotations

import time
from typing import Callable, Optional

ProgressCallback = Callable[[int, int, str], None]
"""``(done, total, label)``: ``done`` of ``total`` steps finished, ``label`` says what was last done."""


class Reporter:
    """Progress of one job of ``total`` steps (``total`` may be set later through :meth:`update`).

    Args:
        description: what the job is ("training fold 2", "preparing windows").
        total: number of steps, if known.
        enabled: False silences the reporter completely.
        every_s: plain-line mode only: the least number of seconds between two progress lines
            (0: one line per update, as sweeps and epochs want).
        transient: live mode only: remove the bar when the job ends.
        console: rich console for the live bar (default: stderr).
    """

    def __init__(self, description: str, total: int | None = None, *, enabled: bool = True,
                 every_s: float = 5.0, transient: bool = False, console=None):
        from rich.console import Console

        self.description = description
        self.title = description          # the closing line names the job, not its last step
        self.total = total
        self.done = 0
        self.label = ""
        self.enabled = enabled
        self.every_s = every_s
        self.console = console if console is not None else Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self.plain = enabled and not self.live
        self._transient = transient
        self._bar = None
        self._task = None
        self._t0 = time.perf_counter()
        self._last_line = -float("inf")

    # ---------------------------------------------------------------------------------- context
    def __enter__(self) -> "Reporter":
        self._t0 = time.perf_counter()
        if self.live:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[label]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=self.console, transient=self._transient)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, label="")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
            self._bar = None
        elif self.plain and exc_type is None:
            self.print(f"{self.title}: done in {time.perf_counter() - self._t0:.1f} s")

    # ---------------------------------------------------------------------------------- updates
    def update(self, done: int, total: int | None = None, label: Optional[str] = None, *,
               description: Optional[str] = None) -> None:
        """Set the absolute progress (``done`` steps of ``total``), what was last done and, optionally,
        a new description (e.g. the current epoch)."""
        if description is not None:
            self.description = description
        self.done = int(done)
        if total is not None:
            self.total = int(total)
        if label is not None:
            self.label = str(label)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, total=self.total, label=self.label,
                             description=self.description)
        elif self.plain:
            now = time.perf_counter()
            finished = self.total is not None and self.done >= self.total
            if now - self._last_line >= self.every_s or (finished and self.every_s == 0):
                self._last_line = now
                of = f"/{self.total}" if self.total is not None else ""
                self.print(f"[{self.done}{of}] {self.description}" + (f": {self.label}" if self.label else ""))

    __call__ = update          # a Reporter is a ProgressCallback

    def advance(self, n: int = 1, label: Optional[str] = None, *, description: Optional[str] = None) -> None:
        """``n`` more steps finished."""
        self.update(self.done + n, None, label, description=description)

    def print(self, text: str) -> None:
        """A plain line on stdout (shown above a live bar when one runs), unless disabled."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(text, highlight=False, markup=False)
        else:
            print(text, flush=True)


def report(progress: ProgressCallback | None, done: int, total: int, label: str = "") -> None:
    """Call ``progress`` if there is one (library code's one-liner)."""
    if progress is not None:
        progress(done, total, label)


__all__ = ["ProgressCallback", "Reporter", "report"]
