"""Training progress that reads well in a terminal, in a pipe and in a log file.

In a terminal, a tqdm bar. Piped or redirected (CI logs, ``| tee``), a redrawn bar becomes
one line of carriage returns tens of kilobytes long, so there the progress goes through
``logging`` instead (logger ``nora.progress``): one short line at each tenth of the run, at
most every ``min_interval_s`` seconds otherwise, and one at the end. Those lines also land in
``train.log`` (Hydra's file handler), in a terminal too, printed above the bar.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

__all__ = ["ProgressBar", "progress_bar"]

log = logging.getLogger("nora.progress")


class ProgressBar:
    """tqdm's ``update`` / ``set_postfix`` / ``close``, reported as log lines."""

    def __init__(self, total: int, desc: str, *, initial: int = 0, unit: str = "step",
                 bar: Any = None, min_interval_s: float = 30.0, tenths: int = 10) -> None:
        self.total, self.desc, self.unit, self.n = max(int(total), 0), desc, unit, initial
        self.bar, self.min_interval_s, self.tenths = bar, min_interval_s, tenths
        self.postfix: dict[str, Any] = {}
        self._start = self._last = time.monotonic()
        self._mark = self._tenth(initial)
        self.closed = self._pending = False

    def _tenth(self, n: int) -> int:
        return n * self.tenths // self.total if self.total else 0

    def line(self) -> str:
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        post = "".join(f", {k}={v}" for k, v in self.postfix.items())
        return (f"{self.desc}: {self.n}/{self.total} {self.unit}s{pct}{post}, "
                f"{time.monotonic() - self._start:.1f} s")

    def _emit(self) -> None:
        self._last = time.monotonic()
        if self.bar is None:
            log.info(self.line())
            return
        with logging_redirect_tqdm():   # printed above the bar, not through it
            log.info(self.line())

    def update(self, n: int = 1) -> None:
        """Count ``n`` units; a line is due at each new tenth (written once the caller's
        ``set_postfix`` for this step has come, so it carries the step's loss)."""
        if self._pending:
            self._flush()
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        tenth = self._tenth(self.n)
        due = time.monotonic() - self._last >= self.min_interval_s
        if (tenth > self._mark and self.n < self.total) or due:
            self._mark, self._pending = tenth, True

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values
        if self.bar is not None:
            self.bar.set_postfix(**values)
        if self._pending:
            self._flush()

    def _flush(self) -> None:
        self._pending = False
        self._emit()

    def close(self) -> None:
        if self.closed:
            return
        self.closed, self._pending = True, False
        if self.bar is not None:
            self.bar.close()
        self._emit()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Off:
    """Progress turned off: every call is a no-op."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Off:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool, *, initial: int = 0,
                 unit: str = "step", stream: TextIO | None = None) -> ProgressBar | _Off:
    """Progress over ``total`` units: a bar on a terminal, short log lines elsewhere.

    Args:
        total: units of work (steps, PPO iterations).
        desc: what is progressing ("train", "ppo").
        enabled: False (pytest, library calls) reports nothing.
        initial: units already done (a resumed run).
        unit: the unit's name in the lines.
        stream: where a bar would be drawn (default ``sys.stderr``); a bar only when it
            is a terminal.
    """
    if not enabled:
        return _Off()
    stream = stream if stream is not None else sys.stderr
    tty = bool(getattr(stream, "isatty", lambda: False)())
    bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False,
               file=stream) if tty else None
    return ProgressBar(total, desc, initial=initial, unit=unit, bar=bar)
