"""Warm template interpreters: one per ``PYTHONHASHSEED``, each forking replicas on request.

The template runs ``nora._replica`` (loaded by path, so without NORA unless told to preload
it) and speaks its line protocol on stdin/stdout. The pool keeps templates warm across calls,
keyed by hash seed, preloaded modules, interpreter and the environment variables read at
start-up (threads, library paths), and replaces one that died. Users:
``nora.analysis.isolation`` and ``nora verify``'s segment replay. This module imports
neither torch nor ``nora.analysis`` (whose package imports torch), so a command can start a
template first and let it import torch while it imports torch itself.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nora import _replica
from nora.errors import NoraError

__all__ = ["POOL", "REPLAY_PRELOAD", "REPLAY_SEEDS", "START_LIMIT", "ReplicaError", "Template",
           "abort_replica", "default_hash_seeds", "warm"]

START_LIMIT = 120.0    # seconds a template may take to start (torch import on a busy machine)
_STARTUP_ENV = ("PYTHON", "OMP_", "MKL_", "KMP_", "OPENBLAS_", "LD_", "TORCH_")


class ReplicaError(NoraError):
    """A replica raised, died or timed out; the message carries its traceback and output."""


def default_hash_seeds(n: int) -> list[int]:
    """``n`` fixed, distinct hash seeds, so a verdict is itself reproducible."""
    return [(2654435761 * (i + 1)) % 4294967291 + 1 for i in range(n)]   # distinct, fixed


# ``nora verify``'s replays: one template whose replicas run NORA's trainer, so it imports
# that once too (each replica importing it paid ~0.5 s of a 1.5 s segment)
REPLAY_SEEDS = tuple(default_hash_seeds(1))
REPLAY_PRELOAD = ("nora.analysis.verify_segments", "nora.config.compose", "nora.runner",
                  "nora.progress")


class Template:
    """A warm interpreter with one PYTHONHASHSEED that forks replicas on request; ``preload``
    names modules it imports after torch, with this process's ``sys.path``."""

    def __init__(self, hash_seed: int, tmpdir: str, preload: Sequence[str] = ()) -> None:
        self.hash_seed, self.ready, self._buf = hash_seed, False, b""
        self._unread: deque[dict[str, Any]] = deque()   # messages read past, for later
        self.stderr_path = os.path.join(tmpdir, f"template-{hash_seed}.err")
        env = dict(os.environ, PYTHONHASHSEED=str(hash_seed))
        script = os.path.join(tmpdir, "nora_template.py")     # a readable name in `ps`
        if not os.path.exists(script):
            Path(script).write_text(_replica.LAUNCHER.format(path=_replica.__file__))
        with open(self.stderr_path, "wb") as err:
            spec = [json.dumps({"preload": list(preload), "sys_path": sys.path})] if preload \
                else []
            self.proc = subprocess.Popen([sys.executable, script, *spec],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, env=env, start_new_session=True)

    def read(self, deadline: float, event: str | None = None,
             pid: int | None = None) -> dict[str, Any] | None:
        """Next protocol message (of ``event``, for ``pid`` if given; others are kept for
        later reads), or None at the deadline; EOF raises ReplicaError."""
        for msg in list(self._unread):
            if _matches(msg, event, pid):
                self._unread.remove(msg)
                return msg
        while True:
            msg = self._next(deadline)
            if msg is None or _matches(msg, event, pid):
                return msg
            self._unread.append(msg)

    def _next(self, deadline: float) -> dict[str, Any] | None:
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if isinstance(msg, dict) and "event" in msg:
                    return msg
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                err = Path(self.stderr_path).read_text(errors="replace")[-4000:]
                raise ReplicaError(f"the template interpreter (PYTHONHASHSEED={self.hash_seed}) "
                                   f"exited with {self.proc.wait()}:\n{err}")
            self._buf += chunk

    def wait_ready(self, limit: float = 0.0) -> None:
        """Block until the template has imported torch (ReplicaError after ``limit`` s)."""
        limit = limit or START_LIMIT
        if not self.ready:
            if self.read(time.monotonic() + limit, "ready") is None:
                raise ReplicaError(f"a template interpreter (PYTHONHASHSEED={self.hash_seed}) "
                                   f"did not start within {limit} s")
            self.ready = True

    def send(self, job: dict[str, Any]) -> None:
        try:
            self.proc.stdin.write(json.dumps(job).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError as exc:                     # it died since it was last used
            raise ReplicaError(f"the template interpreter (PYTHONHASHSEED={self.hash_seed}) "
                               f"is gone: {exc}") from exc

    def close(self, wait: float = 2.0) -> None:
        """End the template: EOF makes a ready one kill its replicas and exit at once; one
        still importing torch has no replica and is killed."""
        try:
            if not self.ready:
                self.proc.kill()
            self.proc.stdin.close()
            self.proc.wait(wait)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def _matches(msg: dict[str, Any], event: str | None, pid: int | None) -> bool:
    return (event is None or msg.get("event") == event) and (pid is None or msg.get("pid") == pid)


class TemplatePool:
    """Templates kept warm across calls, keyed by hash seed and start-up environment."""

    def __init__(self) -> None:
        self.lock, self.templates, self._tmp = threading.RLock(), {}, None
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:   # a forked child must not touch its parent's templates
        self.lock, self.templates, self._tmp = threading.RLock(), {}, None

    def get(self, hash_seeds: Sequence[int], preload: Sequence[str] = ()) -> list[Template]:
        """One template per hash seed (started now if none is warm), importing ``preload``."""
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="nora-templates-")
        env_key = tuple(sorted((k, v) for k, v in os.environ.items()
                               if k.startswith(_STARTUP_ENV) and k != "PYTHONHASHSEED"))
        kind = (tuple(preload), tuple(sys.path) if preload else ())
        out = []
        for h in hash_seeds:
            key = (h, kind, sys.executable, env_key)
            t = self.templates.get(key)
            if t is None or t.proc.poll() is not None:
                for old in [k for k in self.templates if k[0] == h and k[1][0] == kind[0]]:
                    self.templates.pop(old).close(0.5)
                t = self.templates[key] = Template(h, self._tmp, preload)
            out.append(t)
        return out

    def discard(self, t: Template) -> None:
        for key in [k for k, v in self.templates.items() if v is t]:
            del self.templates[key]
        t.proc.kill()
        t.proc.wait()

    def close(self) -> None:
        """End every template, side by side (each exits as soon as it reads EOF)."""
        for t in list(self.templates.values()):
            try:
                if not t.ready:
                    t.proc.kill()
                t.proc.stdin.close()
            except OSError:
                pass
        for t in list(self.templates.values()):
            t.close()
        self.templates.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


POOL = TemplatePool()
atexit.register(POOL.close)


def warm(hash_seeds: Sequence[int], preload: Sequence[str] = ()) -> list[Template]:
    """Start the templates for ``hash_seeds`` now, without waiting for them (none in a
    replica, which must not start interpreters of its own)."""
    if os.environ.get("NORA_REPLICA"):
        return []
    with POOL.lock:
        return POOL.get(hash_seeds, preload)


def abort_replica(t: Template, pid: int) -> None:
    """Kill a replica; keep its template if it reports that replica's end, as it then is in a
    known state (other replicas' messages read meanwhile are kept for later reads)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        answered = t.read(time.monotonic() + 5.0, "done", pid) is not None
    except ReplicaError:
        answered = False
    if not answered:
        POOL.discard(t)
