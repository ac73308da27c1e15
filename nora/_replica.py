"""The code that runs inside a warm template interpreter and its forked replicas.

``nora.templates`` starts one template interpreter per ``PYTHONHASHSEED``. It loads this file
by path (never as ``nora._replica``), so it must import nothing of NORA: NORA's import time
and module state would otherwise leak into every replica of a user's function. Hence stdlib
imports only at the top; torch and numpy are imported where they are used. A template told
to preload modules (``nora verify``'s, whose replicas run NORA's trainer) imports them after
torch, with the caller's ``sys.path``; importing runs no training and draws no numbers.

Protocol (one JSON object per line): the template writes ``{"event": "ready"}`` once torch is
imported; for each job line it reads on stdin it forks a replica and writes ``{"event":
"started", "pid": ...}``, and when a replica ends ``{"event": "done", "pid": ..., "status":
exit_code}``. Replicas run side by side when jobs come faster than they end (``nora verify``
replays its segments that way, paying for one torch import). A replica writes its result
with ``torch.save`` to ``job["out"]``, a traceback to ``job["err"]``, its output to
``job["log"]``. EOF on stdin (the parent went away) kills the running replicas and ends the
template at once (``os._exit``: nothing to flush, and tearing torch down takes seconds).
In-process reruns use ``plain`` from here too, so both paths convert results alike.
"""
from __future__ import annotations

import atexit
import importlib
import importlib.util
import json
import os
import pickle
import select
import signal
import sys
import traceback
from typing import Any

# torch._dynamo: imported lazily by an optimizer step; torch._inductor: by
# torch.use_deterministic_algorithms (seconds per replica on a busy machine, e.g. each
# segment `nora verify` replays)
_PRELOAD = ("torch", "torch._dynamo", "torch._inductor")


def plain(obj: Any) -> Any:
    """Results as plain data, copied: modules become state dicts, arrays tensors."""
    import torch
    np = sys.modules.get("numpy")
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        return t.clone() if t.device.type == "cpu" else t.cpu()
    if np is not None and isinstance(obj, np.ndarray) and obj.dtype.kind in "biufc":
        return torch.from_numpy(np.array(obj, copy=True))
    if np is not None and isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(plain(v) for v in obj)
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    raise TypeError(f"check_reproducible: fn returned a {type(obj).__name__!r}; return "
                    "tensors, arrays, a (nested) state dict or a module")


def _resolve(module: str, qualname: str, file: str | None) -> Any:
    """The function ``module.qualname``; loaded from ``file`` if the module is not importable."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module or not file:
            raise
        spec = importlib.util.spec_from_file_location(module, file)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[module] = mod
        spec.loader.exec_module(mod)
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _child(job: dict[str, Any]) -> None:
    """The replica, right after the fork: become the caller's process, run fn, save, exit."""
    code = 1
    try:
        os.setsid()                    # own process group: killed as a whole, helpers included
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.chdir(job["cwd"])
        sys.path[:] = job["sys_path"]
        env = dict(job["env"], PYTHONHASHSEED=os.environ["PYTHONHASHSEED"], NORA_REPLICA="1")
        os.environ.clear()
        os.environ.update(env)
        import torch
        torch.set_num_threads(job["threads"])
        torch.backends.cudnn.benchmark = job.get("cudnn_benchmark", False)
        if "numpy.random" in sys.modules:
            sys.modules["numpy.random"].seed()   # fresh global state, as in a new interpreter
        fn = _resolve(job["module"], job["qualname"], job["file"])
        with open(job["payload"], "rb") as fh:
            seed, args, kwargs = pickle.load(fh)
        torch.save(plain(fn(seed, *args, **kwargs)), job["out"])
        code = 0
    except BaseException:
        with open(job["err"], "w") as fh:
            fh.write(traceback.format_exc())
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _reap(pid: int, pidfd: int | None) -> int:
    """The exit code of a replica that has ended, after killing what it left in its group."""
    try:
        os.killpg(pid, signal.SIGKILL)       # leftovers of the replica (worker processes)
    except OSError:
        pass
    _, status = os.waitpid(pid, 0)
    if pidfd is not None:
        os.close(pidfd)
    return os.waitstatus_to_exitcode(status)


def _start(job: dict[str, Any], running: dict[int, int | None]) -> None:
    """Fork a replica for ``job``; ``running`` maps its pid to a pidfd (None without pidfds)."""
    pid = os.fork()
    if pid == 0:
        for fd in running.values():          # the siblings' pidfds are not the replica's
            if fd is not None:
                os.close(fd)
        _child(job)
    try:
        running[pid] = os.pidfd_open(pid)
    except (AttributeError, OSError):
        running[pid] = None
    _send({"event": "started", "pid": pid})


def _end(running: dict[int, int | None]) -> None:
    """The parent went away: kill every running replica and leave without tearing down."""
    for pid in running:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        os.waitpid(pid, 0)
    os._exit(0)


def _send(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def serve(spec: str = "") -> None:
    """The template's main loop: preload torch, then fork one replica per job line and report
    each one's end; replicas of jobs sent before the last one ended run side by side.

    ``spec`` (JSON: ``preload``, ``sys_path``) names more modules to import with the caller's
    ``sys.path``, e.g. NORA's trainer for ``nora verify``'s replays, whose code is NORA's.
    """
    extra = json.loads(spec) if spec else {}
    if extra:
        sys.path[:] = extra["sys_path"]
        os.environ["NORA_REPLICA"] = "1"       # imports must not start templates of their own
    for name in (*_PRELOAD, *extra.get("preload", ())):
        importlib.import_module(name)
    _send({"event": "ready"})
    buf, running = b"", {}
    while True:
        fds = [0, *(fd for fd in running.values() if fd is not None)]
        polling = any(fd is None for fd in running.values())
        ready, _, _ = select.select(fds, [], [], 0.01 if polling else None)
        if 0 in ready:
            chunk = os.read(0, 65536)
            if not chunk:
                _end(running)
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    _start(json.loads(line), running)
        for pid in list(running):
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                _send({"event": "done", "pid": pid, "status": _reap(pid, running.pop(pid))})


# What the template runs: this file loaded by path, under a name outside the nora package.
LAUNCHER = """\
import importlib.util, sys
spec = importlib.util.spec_from_file_location("_nora_replica", {path!r})
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
module.serve(*sys.argv[1:])
"""
