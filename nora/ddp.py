"""Run a function on N ranks of a torch.distributed process group, and fail loudly.

One process per rank is spawned (``spawn``: no inherited CUDA or thread state), each
initialises the group (gloo on CPU, NCCL when every rank can have its own GPU), runs
``fn(rank, world_size, *args, **kwargs)`` and sends its return value back over a pipe.
The parent waits on the pipes *and* the process sentinels, so a rank that dies is seen at
once, and watches every rank's progress (``nora.ddp_watch``: heartbeats and CPU time), so a
rank that is silent for ``timeout_s`` is named as hung however long the group has run;
either way the error names the rank, the survivors (and anything they started) are killed,
and nothing is left behind.

Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` set) nothing
is spawned: this process is one rank, torch.distributed's own rendezvous joins the ranks,
and every rank gets the list of all ranks' values (``all_gather_object``).
"""
from __future__ import annotations

import faulthandler
import multiprocessing as mp
import os
import signal
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from multiprocessing.connection import Connection, wait
from typing import Any

from nora.ddp_watch import RankWatch, hang_report, heartbeat, proc_state, set_beats
from nora.errors import NoraError, RunFailedError

__all__ = ["GroupError", "free_port", "heartbeat", "remove_if_launcher_dies", "resolve_backend",
           "run_group", "torchrun_env"]

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
DEFAULT_PORTS = range(20000, 32000)   # below Linux's ephemeral range (32768-60999)
_REAP_GRACE_S = 2.0


class GroupError(RunFailedError):
    """A rank raised, died or hung; ``ranks`` are the culprits, ``pids`` every rank's pid."""

    def __init__(self, message: str, *, ranks: Sequence[int], pids: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.ranks = list(ranks)
        self.pids = list(pids)


def torchrun_env(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """This rank's place in a torchrun-launched group, or None when not launched so."""
    env = os.environ if environ is None else environ
    if not all(env.get(k) for k in TORCHRUN_VARS):
        return None
    return {"rank": int(env["RANK"]), "world_size": int(env["WORLD_SIZE"]),
            "addr": env["MASTER_ADDR"], "port": int(env["MASTER_PORT"])}


def resolve_backend(backend: str, world_size: int) -> str:
    """``auto``: NCCL when each rank can own a GPU, else gloo (NCCL refuses shared GPUs)."""
    if backend not in ("auto", "gloo", "nccl"):
        raise NoraError(f"backend={backend!r} is not one of auto, gloo, nccl")
    if backend != "auto":
        return backend
    import torch

    ok = torch.cuda.is_available() and torch.cuda.device_count() >= world_size
    return "nccl" if ok else "gloo"


def _port_is_free(port: int, addr: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((addr, port))
        except OSError:
            return False
    return True


_next_offset: int | None = None   # where the rotation through candidate ports resumes


def free_port(candidates: Iterable[int] | None = None, *, addr: str = "127.0.0.1") -> int:
    """A port from ``candidates`` that nobody listens on, taken in rotation, so that two
    groups started one after the other do not reuse a port still in TIME_WAIT."""
    global _next_offset
    ports = list(DEFAULT_PORTS if candidates is None else candidates)
    if not ports:
        raise NoraError("free_port: the candidate port range is empty")
    if _next_offset is None:   # start apart from other processes scanning the same range
        _next_offset = os.getpid() % len(ports)
    for i in range(len(ports)):
        port = ports[(_next_offset + i) % len(ports)]
        if _port_is_free(port, addr):
            _next_offset = (_next_offset + i + 1) % len(ports)
            return port
    raise NoraError(f"no free port in {ports[0]}..{ports[-1]} on {addr}")


_LEFT_BEHIND: list[str] = []   # paths a rank removes when its launcher is killed


def remove_if_launcher_dies(path: str) -> None:
    """In a rank: remove ``path`` (a scratch directory) if the launcher is killed, so that not
    even a ``kill -9`` of the launcher leaves it behind (the launcher removes it otherwise)."""
    _LEFT_BEHIND.append(path)


def _watch_launcher(launcher_pid: int) -> None:
    """Exit when the launching process is gone, so a killed launcher leaves no orphan."""
    import shutil

    while True:
        try:
            os.kill(launcher_pid, 0)
        except ProcessLookupError:
            for path in _LEFT_BEHIND:
                shutil.rmtree(path, ignore_errors=True)
            os._exit(3)
        time.sleep(0.5)


def collective_timeout_s(timeout_s: float) -> float:
    """torch's own timeout for one collective in a spawned group: well beyond the silence
    bound, so the launcher (which can tell the stuck rank from the ones waiting for it)
    always decides first; under torchrun, where nobody watches, it is ``timeout_s``."""
    return 2 * timeout_s + 30


def _rank_main(fn: Callable[..., Any], rank: int, world_size: int, backend: str, addr: str,
               port: int, timeout_s: float, args: tuple, kwargs: dict, conn: Connection,
               launcher_pid: int, torch_threads: int | None, dump_path: str,
               beats: Any) -> None:
    """Body of one spawned rank: init, run, barrier, destroy, then report (or the error)."""
    os.setpgrp()   # our own process group: the launcher can kill whatever this rank starts
    set_beats(beats, rank)
    heartbeat()
    threading.Thread(target=_watch_launcher, args=(launcher_pid,), daemon=True).start()
    dump = open(dump_path, "w")   # noqa: SIM115 - lives as long as the rank
    faulthandler.register(signal.SIGUSR1, file=dump, all_threads=False)
    os.environ.update({"MASTER_ADDR": addr, "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world_size)})
    try:
        import torch
        import torch.distributed as dist

        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        if backend == "nccl":
            torch.cuda.set_device(rank % torch.cuda.device_count())
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=collective_timeout_s(timeout_s)))
        heartbeat()
        value = fn(rank, world_size, *args, **kwargs)
        heartbeat()
        dist.barrier()                # nobody tears down the store while others still use it
        dist.destroy_process_group()
        conn.send(("ok", value))
    except BaseException:  # noqa: BLE001 - the launcher reports it, naming this rank
        try:
            conn.send(("error", traceback.format_exc()))
        finally:
            conn.close()
            os._exit(1)
    conn.close()


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _reap(procs: Sequence[Any], wait_s: float = 0.0) -> None:
    """Stop every rank and its process group: ``wait_s`` for ranks that are done to exit on
    their own, then SIGTERM, a grace period, and SIGKILL."""
    deadline = time.monotonic() + wait_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in procs:
            if p.pid is None:
                continue
            try:
                os.killpg(p.pid, sig)   # the rank's group: the rank and its children
                if sig == signal.SIGTERM:
                    os.killpg(p.pid, signal.SIGCONT)   # a stopped rank cannot act on TERM
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + (_REAP_GRACE_S if sig == signal.SIGTERM else 10.0)
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        if all(p.exitcode is not None for p in procs):
            break
    for p in procs:
        if p.exitcode is not None:
            p.close()


def _context() -> Any:
    """forkserver with torch preloaded: the server imports torch once, each rank is then a
    fork of that clean process (milliseconds, no CUDA state); spawn where there is none."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "torch.distributed", "nora.ddp"])
    return ctx


def _spawn_group(fn: Callable[..., Any], world_size: int, backend: str, addr: str, port: int,
                 timeout_s: float, args: tuple, kwargs: dict,
                 torch_threads: int | None) -> list[Any]:
    ctx = _context()
    procs: list[Any] = []
    conns: list[Connection] = []
    results: dict[int, Any] = {}
    what = f"DDP group (world_size={world_size}, backend={backend}, port={port})"
    t0 = time.monotonic()
    beats = ctx.Array("q", world_size, lock=False)   # heartbeat counters, one per rank
    with tempfile.TemporaryDirectory(prefix="nora-ddp-") as tmp:
        dumps = [os.path.join(tmp, f"rank{r}.stack") for r in range(world_size)]
        try:
            for rank in range(world_size):
                recv, send = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_rank_main, name=f"nora-ddp-rank{rank}",
                                args=(fn, rank, world_size, backend, addr, port, timeout_s,
                                      args, kwargs, send, os.getpid(), torch_threads,
                                      dumps[rank], beats))
                p.start()
                send.close()
                procs.append(p)
                conns.append(recv)
            pids = [p.pid for p in procs]
            watch = RankWatch(pids, beats, timeout_s=timeout_s)
            poll_s = min(0.25, timeout_s / 8)
            while len(results) < world_size:
                pending = [r for r in range(world_size) if r not in results]
                if watch.poll(pending):
                    where, culprits = hang_report(pids, pending, dumps, watch, __file__)
                    raise GroupError(
                        f"{what}: rank {', '.join(map(str, culprits))} hung: no progress "
                        f"(heartbeat or CPU demand) from rank(s) {', '.join(map(str, pending))} "
                        f"for {timeout_s:g} s, after {time.monotonic() - t0:.1f} s of running; "
                        f"they were killed. Where each was:\n{where}\nHint: a rank blocked in "
                        "a collective waits for a rank that never reaches it; a rank that waits "
                        "on I/O longer than timeout_s should call nora.ddp.heartbeat().",
                        ranks=culprits, pids=pids)
                waitables = {conns[r]: r for r in pending} | {procs[r].sentinel: r
                                                              for r in pending}
                for obj in wait(list(waitables), timeout=poll_s):
                    rank = waitables[obj]
                    if rank in results:
                        continue
                    msg = _receive(conns[rank])
                    if msg is None:
                        procs[rank].join(1.0 if obj is conns[rank] else None)
                        if procs[rank].exitcode is None:
                            continue
                        raise GroupError(
                            f"{what}: rank {rank} died ({_exit_text(procs[rank].exitcode)}) "
                            f"after {time.monotonic() - t0:.1f} s without returning; the other "
                            "ranks were killed.", ranks=[rank], pids=pids)
                    if msg[0] == "error":
                        dead = _silently_dead(procs, conns, exclude=rank)
                        if dead is not None:   # the root cause; this rank only lost its peer
                            raise GroupError(
                                f"{what}: rank {dead} died ({_exit_text(procs[dead].exitcode)})"
                                f" after {time.monotonic() - t0:.1f} s without returning; rank "
                                f"{rank} then failed:\n{msg[1]}", ranks=[dead], pids=pids)
                        stopped = [r for r in pending if r != rank
                                   and proc_state(pids[r]) in ("T", "t")]
                        if stopped:   # a stopped peer made this rank's collective time out
                            raise GroupError(
                                f"{what}: rank {', '.join(map(str, stopped))} hung: stopped "
                                f"(SIGSTOP or a debugger); rank {rank} then failed:\n{msg[1]}",
                                ranks=stopped, pids=pids)
                        raise GroupError(f"{what}: rank {rank} raised:\n{msg[1]}",
                                         ranks=[rank], pids=pids)
                    results[rank] = msg[1]
            return [results[r] for r in range(world_size)]
        finally:
            for c in conns:
                c.close()
            _reap(procs, wait_s=5.0 if len(results) == world_size else 0.0)


def _silently_dead(procs: Sequence[Any], conns: Sequence[Connection], *, exclude: int,
                   grace_s: float = 1.0) -> int | None:
    """A rank that exited abnormally without a message: when one rank raises because its
    peer vanished (gloo: connection reset), the vanished peer is the one to name."""
    deadline = time.monotonic() + grace_s
    for r, p in enumerate(procs):
        if r == exclude:
            continue
        p.join(max(0.0, deadline - time.monotonic()))
        if p.exitcode not in (None, 0) and _receive(conns[r]) is None:
            return r
    return None


def _receive(conn: Connection) -> tuple[str, Any] | None:
    """The rank's message if one is there; None when it sent nothing (yet, or ever)."""
    try:
        if conn.poll():
            return conn.recv()
    except (EOFError, OSError):
        return None
    return None


def _join_torchrun(fn: Callable[..., Any], env: dict[str, Any], world_size: int, backend: str,
                   timeout_s: float, args: tuple, kwargs: dict) -> list[Any]:
    import torch
    import torch.distributed as dist

    if world_size != env["world_size"]:
        raise GroupError(f"run_group(world_size={world_size}) but torchrun set WORLD_SIZE="
                         f"{env['world_size']}; pass world_size={env['world_size']}",
                         ranks=[env["rank"]])
    rank = env["rank"]
    owned = not dist.is_initialized()
    if owned:
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
        dist.init_process_group(backend, init_method="env://", rank=rank,
                                world_size=world_size, timeout=timedelta(seconds=timeout_s))
    try:
        value = fn(rank, world_size, *args, **kwargs)
        gathered: list[Any] = [None] * world_size
        dist.all_gather_object(gathered, value)
        dist.barrier()
        return gathered
    finally:
        if owned:
            dist.destroy_process_group()


def run_group(fn: Callable[..., Any], world_size: int, *, backend: str = "auto",
              port: int | None = None, timeout_s: float = 60.0, args: Sequence[Any] = (),
              kwargs: Mapping[str, Any] | None = None, ports: Iterable[int] | None = None,
              addr: str = "127.0.0.1", torch_threads: int | None = 1) -> list[Any]:
    """Run ``fn(rank, world_size, *args, **kwargs)`` on every rank; each rank's value, in order.

    Args:
        fn: a module-level function (it is pickled by reference into each rank).
        world_size: number of ranks.
        backend: ``auto`` (NCCL when each rank can own a GPU, else gloo), ``gloo``, ``nccl``.
        port: the rendezvous port; None takes a free one from ``ports``.
        timeout_s: bound on the whole call; a dead rank fails it at once, a hung one here.
        ports: candidate ports (the pytest plugin gives each xdist worker its own range).
        torch_threads: intra-op threads per rank (None leaves torch's default), so ranks
            neither oversubscribe the cores nor change the bits of CPU reductions.

    Raises:
        GroupError: a rank raised, died or did not finish in time; the message names it.
    """
    if world_size < 1:
        raise NoraError(f"world_size={world_size!r}: expected an integer >= 1")
    if timeout_s <= 0:
        raise NoraError(f"timeout_s={timeout_s!r}: expected a positive number of seconds")
    args, kwargs = tuple(args), dict(kwargs or {})
    env = torchrun_env()
    if env is not None:
        return _join_torchrun(fn, env, world_size, resolve_backend(backend, env["world_size"]),
                              timeout_s, args, kwargs)
    chosen = resolve_backend(backend, world_size)
    port = port if port is not None else free_port(ports, addr=addr)
    return _spawn_group(fn, world_size, chosen, addr, port, timeout_s, args, kwargs,
                        torch_threads)
