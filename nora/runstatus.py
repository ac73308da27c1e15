"""Mark a run that stopped without finishing (a crashed xdist worker, a failed DDP group):
its manifest must never stay ``running`` once nobody is running it."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from nora.records import read_json, write_json

__all__ = ["UNFINISHED", "mark_stopped"]

UNFINISHED = ("running", None)   # manifest statuses that mean "nobody finished this run"


def mark_stopped(run_dir: str | Path, status: str, reason: str, *,
                 defaults: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Set ``status`` and ``error`` in ``run_dir/manifest.json`` when it is still unfinished
    (or unreadable); a finished run (done, halted, failed) is left as it is, except that one
    already marked ``status`` without a reason gets ``reason``. ``defaults`` fill keys a run
    stopped before writing its manifest could not (e.g. ``config``).

    Returns the manifest as written, or None when there was nothing to mark (no run
    directory, or a run that had finished).
    """
    path = Path(run_dir) / "manifest.json"
    if not path.parent.is_dir():
        return None
    try:
        manifest = read_json(path) if path.exists() else {}
    except (OSError, ValueError):
        manifest = {}
    if not isinstance(manifest, dict):
        manifest = {}
    if manifest.get("status") == status and not manifest.get("error"):
        manifest["error"] = reason
        write_json(path, manifest)
        return manifest
    if manifest.get("status") not in UNFINISHED:
        return None
    for key, value in (defaults or {}).items():
        manifest.setdefault(key, value)
    manifest.update(status=status, error=reason,
                    stopped_at=datetime.now().isoformat(timespec="seconds"))
    write_json(path, manifest)
    return manifest
