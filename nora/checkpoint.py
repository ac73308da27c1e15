"""Checkpoints that survive any kill, carry a checksum and load only if intact.

Saving ``checkpoints/last.pt`` goes in steps that each leave the last complete checkpoint
loadable, whatever moment a kill picks:

1. the new state goes to a temporary file, fsynced (the old ``last.pt`` is untouched);
2. the run's ``manifest.json`` is rewritten atomically to accept the old *and* the new
   checksum (``checkpoints_pending``); outside a run directory the ``.sha256`` sidecar is;
3. the temporary file is renamed over ``last.pt`` (atomic);
4. the sidecar is rewritten (its commit fsyncs the folder, making 3 durable too), then the
   manifest's ``checkpoints`` is narrowed to the new checksum.

A checkpoint at a new path (``step_<n>.pt``, a run's first ``last.pt``) has no old file to
keep loadable: its checksum goes straight into ``checkpoints`` (or the sidecar) before the
rename, so a file in a run directory is always recorded (a kill in between leaves a
recorded checkpoint that does not exist: "does not exist", never a wrong file), and the
save costs two fsyncs fewer.

Loading checks the file against the checksum its run's manifest recorded when the file lies
in a run directory (``<run>/checkpoints/``), else against the sidecar, so an altered file
with a recomputed sidecar is refused. Then ``torch.load(weights_only=True)``: a checkpoint is
data, never code.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nora.errors import CheckpointError, NoraError, first_line
from nora.reader import checkpoint_records, read_object
from nora.records import (commit, fsync_dir, remove_stale_temps, write_json, write_temp,
                          write_text)

FULL_STATE = ("model", "optimizer", "scheduler", "scaler", "rng", "position", "agent",
              "config_hash")
_DIGEST = re.compile(r"[0-9a-f]{64}")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return Path(f"{path}.sha256")


def _sidecar_digests(path: Path) -> list[str]:
    """The checksums the sidecar accepts (two while a save is switching files)."""
    try:
        text = _sidecar(path).read_bytes().decode("ascii", errors="replace")
    except OSError:
        return []
    return [w for w in text.split() if _DIGEST.fullmatch(w)]


def governing_run(path: str | Path) -> tuple[Path, str] | None:
    """``(run_dir, "checkpoints/<name>")`` when ``path`` lies in a run directory whose
    manifest records its checkpoints; None for a checkpoint outside any run."""
    p = Path(os.path.abspath(path))
    if p.parent.name == "checkpoints" and (p.parent.parent / "manifest.json").is_file():
        return p.parent.parent, f"checkpoints/{p.name}"
    return None


def _record(run_dir: Path, rel: str, *, pending: str | None, done: str | None) -> None:
    manifest = read_object(run_dir / "manifest.json")
    recorded = dict(manifest.get("checkpoints") or {})
    waiting = dict(manifest.get("checkpoints_pending") or {})
    if done is not None:
        recorded[rel] = done
    waiting.pop(rel, None)
    if pending is not None:
        waiting[rel] = pending
    manifest["checkpoints"] = recorded
    if waiting:
        manifest["checkpoints_pending"] = waiting
    else:
        manifest.pop("checkpoints_pending", None)
    write_json(run_dir / "manifest.json", manifest)


def _settle(run_dir: Path, rel: str, path: Path) -> None:
    """A save killed after its rename left the new checksum pending: record it as done
    (only if ``path`` really has it), before a new save makes another one pending."""
    pending = checkpoint_records(run_dir)["checkpoints_pending"].get(rel)
    if pending is not None and path.is_file() and file_sha256(path) == pending:
        _record(run_dir, rel, pending=None, done=pending)


def save_checkpoint(state: Mapping[str, Any], path: str | Path, *,
                    record_in_manifest: bool = True) -> str:
    """Write ``state`` so that a kill at any moment leaves the previous or the new checkpoint
    loadable (module docstring); return the new file's sha256. Inside a run directory the
    run's manifest records the checksum (``record_in_manifest=False`` leaves it alone)."""
    import torch

    path = Path(path)
    for stale in (path, _sidecar(path)):
        remove_stale_temps(stale)
    tmp = write_temp(path, lambda fh: torch.save(dict(state), fh))
    run = governing_run(path) if record_in_manifest else None
    fresh = not path.exists()                   # nothing to keep loadable meanwhile
    try:
        digest = file_sha256(tmp)
        if run is not None:                     # the manifest is what a resume trusts
            _settle(*run, path)
            _record(*run, pending=None if fresh else digest, done=digest if fresh else None)
        else:                                   # outside a run the sidecar is
            old = [] if fresh else _sidecar_digests(path)
            write_text(_sidecar(path), "\n".join(dict.fromkeys([digest, *old])) + "\n")
        commit(tmp, path, sync_dir=False)       # the sidecar's commit syncs the folder
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if run is not None or not fresh:
        write_text(_sidecar(path), digest + "\n")
    else:                                       # the sidecar already says just this
        fsync_dir(path.parent)
    if run is not None and not fresh:
        _record(*run, pending=None, done=digest)
    return digest


def _accepted(path: Path, expected: str | None) -> tuple[list[str], str]:
    """The checksums ``path`` may have, and where they were recorded (for messages)."""
    if expected is not None:
        return [expected], "the expected checksum"
    run = governing_run(path)
    if run is not None:
        run_dir, rel = run
        try:
            records = checkpoint_records(run_dir)
        except NoraError as exc:
            raise CheckpointError(f"checkpoint {str(path)!r}: its run's manifest cannot be "
                                  f"read ({exc}); refusing an unverifiable file") from None
        digests = [d for d in (records["checkpoints"].get(rel),
                               records["checkpoints_pending"].get(rel)) if d]
        if not digests:
            raise CheckpointError(f"checkpoint {str(path)!r}: its run's manifest "
                                  f"({str(run_dir / 'manifest.json')!r}) records no checksum "
                                  f"for {rel!r}; refusing an unverifiable file")
        manifest = str(run_dir / "manifest.json")
        return digests, f"the checksum its run's manifest ({manifest!r}) recorded"
    digests = _sidecar_digests(path)
    if not digests:
        raise CheckpointError(f"checkpoint {str(path)!r} has no recorded checksum; "
                              "refusing to load an unverifiable file")
    return digests, f"the checksum in {str(_sidecar(path))!r}"


def verify_checkpoint(path: str | Path, *, expected_sha256: str | None = None) -> str:
    """The sha256 of an intact checkpoint; ``CheckpointError`` naming the file otherwise.

    Cheap enough to run before a run directory is created (``resume_from=`` preflight).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} is not a file")
    accepted, source = _accepted(path, expected_sha256)
    try:
        actual = file_sha256(path)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read: "
                              f"{exc.strerror or exc}") from None
    if actual not in accepted:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or altered: sha256 "
                              f"{actual[:16]}… does not match {source} "
                              f"({', '.join(d[:16] + '…' for d in accepted)})")
    return actual


def load_checkpoint(path: str | Path, *, expected_sha256: str | None = None,
                    map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint after checking its checksum; refuse anything truncated or altered."""
    import torch

    verify_checkpoint(path, expected_sha256=expected_sha256)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise CheckpointError(f"checkpoint {str(path)!r} could not be read: "
                              f"{first_line(exc)}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {type(state).__name__}; "
                              "expected a dict of parts")
    return state


def audit(state: Mapping[str, Any], required: Iterable[str] = FULL_STATE) -> list[str]:
    """Names of the required parts a checkpoint lacks (empty when it is complete)."""
    return [k for k in required if k not in state or state[k] is None]
