"""Run records on disk: the one atomic writer, line-flushed JSONL streams, the environment.

Every file NORA writes into a run directory or a report goes through ``write_temp`` +
``commit`` (or ``write_json`` / ``write_text`` on top of them): the data
goes to a temporary file in the same folder, is fsynced, renamed over the target and the
folder is fsynced, so a killed process (or a lost machine) leaves the old file or the new one,
never half of one. Inside ``durability(False)`` (a run with ``durable=false``, as pytest
cases train) the fsyncs are left out: the rename alone keeps every file whole through any
killed process, but not through a lost machine; it saves about 1 ms a file here.
Files are created with mode 0666 minus the umask, like any ``open()``.
Each JSONL line is flushed as it is written, so a killed run leaves every completed record.
Reading is ``nora.reader``'s (re-exported here as ``read_json`` / ``read_jsonl``).
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import functools
import json
import os
import platform
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from nora.reader import read_json, read_jsonl

__all__ = ["JsonlWriter", "commit", "durability", "environment", "fsync_dir", "mark_stopped",
           "read_json", "read_jsonl", "remove_stale_temps", "write_json", "write_temp",
           "write_text"]

_VERSIONED = ("torch", "numpy", "pydantic", "hydra-core", "gymnasium", "scikit-learn", "nora")
_TMP_SUFFIX = ".tmp"


def _default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    torch = sys.modules.get("torch")  # a tensor can only exist if torch is loaded
    if torch is not None and isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


# ---------------------------------------------------------------------------- the writer
_DURABLE: contextvars.ContextVar[bool] = contextvars.ContextVar("nora_durable", default=True)


@contextlib.contextmanager
def durability(durable: bool) -> Iterator[None]:
    """Within: fsync what is written (True, the default) or rely on atomic renames only."""
    token = _DURABLE.set(bool(durable))
    try:
        yield
    finally:
        _DURABLE.reset(token)


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where the file system cannot, or outside
    durable writing)."""
    if not _DURABLE.get():
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def write_temp(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write a temporary sibling of ``path`` with ``write(binary_file)`` and fsync it
    (when writing durably).

    The name (``.<name>.<pid>.<random>.tmp``) tells ``remove_stale_temps`` whose it is. On
    any exception (a signal included) the temporary file is removed and the error re-raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                 0o666)                                   # the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if _DURABLE.get():
                os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def commit(tmp: str | Path, path: str | Path, *, sync_dir: bool = True) -> None:
    """Rename a finished temporary file over ``path`` and make the rename durable
    (``sync_dir=False`` when a later commit in the same folder will)."""
    path = Path(path)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Remove temporary siblings of ``path`` left by processes that died while writing."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*{_TMP_SUFFIX}"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue                                      # its writer is still alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically (UTF-8)."""
    data = text.encode()
    commit(write_temp(path, lambda fh: fh.write(data)), path)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically: readers see the old file or the new one, never half of one."""
    text = json.dumps(data, indent=2, default=_default, allow_nan=True) + "\n"
    write_text(path, text)


def mark_stopped(run_dir: str | Path, status: str) -> bool:
    """Set a manifest still at ``running`` to ``status`` (``interrupted``, ``failed``) when
    a run was stopped where the runner could not say so; True if it changed the file."""
    path = Path(run_dir) / "manifest.json"
    try:
        manifest = read_json(path)
    except ValueError:          # RecordError: no manifest, or one this run never finished
        return False
    if not isinstance(manifest, dict) or manifest.get("status") != "running":
        return False
    manifest["status"] = status
    write_json(path, manifest)
    return True


class JsonlWriter:
    """Append-only JSONL stream; each record is flushed when written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, default=_default, allow_nan=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


# ---------------------------------------------------------------------------- environment
def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                             cwd=Path.cwd())
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.cache
def _code_state(cwd: str) -> tuple[str | None, bool | None]:
    """The git commit and dirty flag, read once per process and directory: a process runs
    the code it imported, so an edit on disk later would not change what it runs."""
    commit_id = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit_id else None
    return commit_id, (bool(status) if commit_id else None)


@functools.cache
def _versions() -> dict[str, str | None]:
    """Installed versions, read once per process (about 20 ms a read: a process keeps the
    modules it imported, so a later install would not change what it runs anyway)."""
    out: dict[str, str | None] = {}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment(device: str) -> dict[str, Any]:
    """What outside the config decides the bits of a run: versions, threads, device, code."""
    import torch

    versions = dict(_versions())
    commit_id, dirty = _code_state(str(Path.cwd()))
    cuda = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None
    return {
        "torch_threads": torch.get_num_threads(),
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "cuda_device_name": cuda,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "git_commit": commit_id,
        "git_dirty": dirty,
        "python_hash_seed": os.environ.get("PYTHONHASHSEED"),
    }
