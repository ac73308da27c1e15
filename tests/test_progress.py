"""Progress in a pipe is a few short log lines, not one redrawn 23 KB line."""
from __future__ import annotations

import io
import logging

from nora.progress import ProgressBar, progress_bar


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _drive(bar, steps: int) -> None:
    for i in range(steps):
        bar.update(1)
        bar.set_postfix(epoch=i // 10, loss=f"{1 / (i + 1):.3f}")
    bar.close()


def test_piped_progress_is_a_line_per_tenth_with_the_steps_loss(caplog):
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="nora.progress"):
        _drive(progress_bar(400, "train", True, stream=stream), 400)
    assert stream.getvalue() == ""                       # no bar drawn into the pipe
    lines = [r.getMessage() for r in caplog.records if r.name == "nora.progress"]
    assert 10 <= len(lines) <= 11 and all(len(ln) < 120 for ln in lines)
    assert lines[0].startswith("train: 40/400 steps (10%), epoch=3, loss=0.025")
    assert lines[-1].startswith("train: 400/400 steps (100%)")


def test_a_resumed_run_starts_counting_where_it_stopped(caplog):
    with caplog.at_level(logging.INFO, logger="nora.progress"):
        bar = progress_bar(100, "ppo", True, initial=50, unit="iter", stream=io.StringIO())
        _drive(bar, 50)
    lines = [r.getMessage() for r in caplog.records if r.name == "nora.progress"]
    assert lines[0].startswith("ppo: 60/100 iters (60%)") and len(lines) == 5


def test_a_terminal_gets_a_tqdm_bar_and_the_log_lines(caplog):
    stream = Tty()
    with caplog.at_level(logging.INFO, logger="nora.progress"):
        bar = progress_bar(20, "train", True, stream=stream)
        assert isinstance(bar, ProgressBar) and bar.bar is not None
        _drive(bar, 20)
    assert "\r" in stream.getvalue() and "20/20" in stream.getvalue()
    assert any("20/20 steps" in r.getMessage() for r in caplog.records)


def test_disabled_progress_is_silent(caplog):
    stream = Tty()
    with caplog.at_level(logging.DEBUG):
        _drive(progress_bar(20, "train", False, stream=stream), 20)
    assert stream.getvalue() == "" and not caplog.records
