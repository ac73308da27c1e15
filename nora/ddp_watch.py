"""Is a DDP group making progress? A hang is silence, not length: a group may run for hours,
but when no unfinished rank has burnt CPU or reported a step for ``timeout_s``, it is hung
(and ``hang_report`` tells the stuck ranks from those waiting for them in a collective).

Progress is either signal: a heartbeat (``heartbeat()``, which NORA's trainers call every
step and a user's rank function may call in long phases of I/O), or the rank's main thread
wanting the CPU: its time running plus its time runnable but waiting for a core
(``/proc/<pid>/task/<pid>/schedstat``, in ns). Counting the wait makes the signal hold on a
loaded machine (a working thread is always one or the other), and reading the main thread
only leaves out the background threads (gloo's, the launcher watch) that wake while the
rank is stuck. A rank stopped (``SIGSTOP``), asleep, or blocked in a collective shows
neither signal; a rank that computes, loads data or evaluates shows the second even if
nobody calls ``heartbeat()``. Without schedstat, the process's CPU time is read instead.
"""
from __future__ import annotations

import collections
import os
import re
import signal
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["RankWatch", "heartbeat", "where"]

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PROC = os.path.exists("/proc/self/stat")
# a working main thread wants the CPU nearly all the time (running or queued); a stuck one
# does not wake at all. 10% of the window separates them by an order of magnitude.
BUSY_FRACTION = 0.10

_beats: Any = None     # this rank's shared counters (set in spawned ranks only)
_rank = 0


def set_beats(beats: Any, rank: int) -> None:
    """Called in a spawned rank: where ``heartbeat()`` counts."""
    global _beats, _rank
    _beats, _rank = beats, rank


def heartbeat() -> None:
    """Tell the launcher this rank made progress. Cheap (one shared-memory increment); a
    no-op outside a group spawned by ``nora.ddp.run_group``."""
    if _beats is not None:
        _beats[_rank] += 1


def busy_seconds(pid: int) -> float | None:
    """Seconds the main thread of ``pid`` ran or waited to run; else its process's CPU
    time; None where /proc cannot tell."""
    if not _PROC:
        return None
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as fh:
            ran_ns, waited_ns = fh.read().split()[:2]
        return (int(ran_ns) + int(waited_ns)) / 1e9
    except (OSError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def proc_state(pid: int) -> str:
    """The kernel's one-letter state (R, S, D, T stopped, t traced, Z); '?' if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


class RankWatch:
    """The launcher's view of every rank's last sign of progress (monotonic seconds)."""

    def __init__(self, pids: Sequence[int], beats: Any, *, timeout_s: float) -> None:
        self.pids, self.beats, self.timeout_s = list(pids), beats, timeout_s
        now = time.monotonic()
        self.window = min(1.0, timeout_s / 4)
        self.last = [now] * len(self.pids)
        self.count = [0] * len(self.pids)
        self.samples = [collections.deque([(now, busy_seconds(p) or 0.0)]) for p in self.pids]

    def poll(self, ranks: Sequence[int]) -> bool:
        """Sample ``ranks``; True when every one of them has been silent for ``timeout_s``.
        One silent rank is not enough: it may only be waiting in a collective for a peer
        that is still working (a slow rank, a loaded machine)."""
        now = time.monotonic()
        for r in ranks:
            beat = int(self.beats[r])
            if beat != self.count[r]:
                self.count[r], self.last[r] = beat, now
            cpu = busy_seconds(self.pids[r])
            if cpu is None:
                continue
            window = self.samples[r]
            window.append((now, cpu))
            while len(window) > 2 and window[1][0] <= now - self.window:
                window.popleft()
            t0, c0 = window[0]
            if now - t0 >= self.window * 0.5 and cpu - c0 >= BUSY_FRACTION * (now - t0):
                self.last[r] = now
        return bool(ranks) and all(now - self.last[r] >= self.timeout_s for r in ranks)

    def silence(self, rank: int) -> float:
        return time.monotonic() - self.last[rank]


_FRAME = re.compile(r'File "(?P<path>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')


def where(dump: str, launcher_file: str) -> str:
    """Where a hung rank is, from its faulthandler dump: the innermost frame of the caller's
    code, and the torch call it is blocked in, if any."""
    frames = [m.groupdict() for m in _FRAME.finditer(dump)]   # innermost first
    if not frames:
        return "no stack dump (the rank did not answer SIGUSR1)"

    def is_lib(f: dict[str, str]) -> bool:
        path = f["path"]
        return ("/torch/" in path or "/multiprocessing/" in path or path == launcher_file
                or path == __file__ or path.startswith("<"))
    user = next((f for f in frames if not is_lib(f)), frames[0])
    text = f"{user['path']}:{user['line']} in {user['func']}"
    inner = frames[0]
    if "/torch/" in inner["path"]:
        torch_fn = next((f["func"] for f in frames if "/torch/" in f["path"]
                         and f["func"] not in ("wrapper", "_fn")), inner["func"])
        text += f" (blocked in torch {torch_fn})"
    return text


def hang_report(pids: Sequence[int], pending: Sequence[int], dumps: Sequence[str],
                watch: RankWatch, launcher_file: str) -> tuple[str, list[int]]:
    """Ask each unfinished rank for its stack (SIGUSR1 -> faulthandler): where each one is,
    and which ones hang themselves: stopped, or silent outside a collective (the others only
    wait for them in one)."""
    stopped = {r for r in pending if proc_state(pids[r]) in ("T", "t")}
    for r in pending:
        if r not in stopped:
            try:
                os.kill(pids[r], signal.SIGUSR1)
            except ProcessLookupError:
                pass
    time.sleep(0.3)
    lines, culprits = [], []
    for r in pending:
        silent = f"no progress for {watch.silence(r):.1f} s"
        if r in stopped:
            culprits.append(r)
            lines.append(f"  rank {r} (pid {pids[r]}): stopped (SIGSTOP or a debugger), {silent}")
            continue
        try:
            with open(dumps[r]) as fh:
                at = where(fh.read(), launcher_file)
        except OSError:
            at = where("", launcher_file)
        if "(blocked in torch" not in at:
            culprits.append(r)
        lines.append(f"  rank {r} (pid {pids[r]}): {silent}, at {at}")
    return "\n".join(lines), culprits or list(pending)
