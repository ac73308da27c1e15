"""The one reader of run directories: every record file is read and checked here.

A run directory is input like any other: it may be empty, truncated, hand-edited or hostile.
Every reader below either returns data of the documented shape or raises ``RecordError``
naming the file (and line) and what is wrong; nothing is skipped silently. The one
exception is the last line of a JSONL file when it has no line end: that is the record a
killed run was writing (lines are flushed whole, ``\\n`` last), so it is not a record yet.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nora.errors import RecordError, first_line

__all__ = ["MANIFEST_FIELDS", "checkpoint_records", "load_state", "read_json", "read_jsonl",
           "read_decisions", "read_manifest", "read_object", "read_repro_metrics", "read_steps",
           "read_tensor_hashes"]

_NUM = (int, float)
# Field -> the JSON types it may hold ("?" also allows null); checked where present.
MANIFEST_FIELDS = {"status": "str", "config": "dict", "fingerprint": "str?", "outcome": "str?",
                   "metrics": "dict?", "duration_sec": "num?", "config_changes": "list",
                   "seams_at_start": "dict", "checkpoints": "dict", "checkpoints_pending": "dict",
                   "env": "dict", "seeds": "dict", "determinism": "dict", "started_at": "str?",
                   "finished_at": "str?", "resumed_from": "str?", "dataset_fingerprint": "str?",
                   "findings": "list"}
_REQUIRED = ("status", "config")
_CONFIG_FIELDS = {"seed": "int?", "device": "str", "resume_from": "str?",
                  "replay_changes": "list", "train": "dict", "repro": "dict", "ddp": "dict"}
_GROUPS = ("mode", "regime", "violation", "trainer")
_STEP_FIELDS = {"step": "int", "epoch": "int", "loss": "num?", "loss_bits": "str", "lr": "num?",
                "param_hash": "str?", "kind": "str"}
_DECISION_FIELDS = {"agent_action": "str", "violation_name": "str?", "message": "str",
                    "event": "str", "step": "int", "epoch": "int", "regime": "str?", "mode": "str?"}
_REPRO_FIELDS = {"outcome": "str?", "expected_outcome": "str?", "detection_rate_pct": "num?",
                 "avg_time_to_detection_sec": "num?", "false_positives": "int?",
                 "first_detection_step": "int?", "verdicts": "dict", "fingerprint": "str?",
                 "violations_injected": "list", "findings": "list"}


def _fits(value: Any, kind: str) -> bool:
    if kind.endswith("?"):
        if value is None:
            return True
        kind = kind[:-1]
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "num":
        return isinstance(value, _NUM) and not isinstance(value, bool)
    return isinstance(value, {"str": str, "dict": dict, "list": list}[kind])


def _check(obj: Mapping[str, Any], fields: Mapping[str, str], where: str) -> None:
    for key, kind in fields.items():
        if key in obj and not _fits(obj[key], kind):
            want = kind.rstrip("?") + (" or null" if kind.endswith("?") else "")
            raise RecordError(f"{where}: {key!r} is {_show(obj[key])}; expected {want}")


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _parse(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:   # JSONDecodeError, huge ints, deep nesting
        raise RecordError(f"{where} is not valid JSON: {str(exc)[:120]}") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"{str(path)!r} is not UTF-8 text (byte {exc.start}): a binary or "
                          "damaged file where a record was expected") from None
    except FileNotFoundError:
        raise RecordError(f"{str(path)!r} does not exist") from None
    except OSError as exc:
        raise RecordError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None


def read_json(path: str | Path) -> Any:
    """The JSON value in ``path``; ``RecordError`` if missing, unreadable or not JSON."""
    path = Path(path)
    return _parse(_read_text(path), repr(str(path)))


def read_object(path: str | Path) -> dict[str, Any]:
    """A JSON file that must hold an object (a dict)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise RecordError(f"{str(path)!r} holds {_show(data)}; expected a JSON object")
    return data


def read_jsonl(path: str | Path, *, missing_ok: bool = True) -> list[dict[str, Any]]:
    """Every record of a JSONL file, each a JSON object; a torn (unterminated) last line,
    the one a killed run was writing, is left out. Any other bad line is a ``RecordError``."""
    path = Path(path)
    if missing_ok and not path.exists():
        return []
    text = _read_text(path)
    lines = text.split("\n")
    torn = lines.pop()          # "" when the file ends with a line end
    out = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        rec = _parse(line, f"{str(path)!r} line {lineno}")
        if not isinstance(rec, dict):
            raise RecordError(f"{str(path)!r} line {lineno} holds {_show(rec)}; expected a "
                              "JSON object per line")
        out.append(rec)
    if torn.strip():
        try:
            rec = json.loads(torn)
        except (ValueError, RecursionError):
            return out          # the record being written when the run was killed
        if not isinstance(rec, dict):
            raise RecordError(f"{str(path)!r} line {len(lines) + 1} holds {_show(rec)}; "
                              "expected a JSON object per line")
        out.append(rec)
    return out


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """``run_dir/manifest.json``, checked: an object with ``status`` and ``config``, and every
    field NORA reads of the documented type (``MANIFEST_FIELDS``)."""
    run_dir = Path(run_dir)
    path = run_dir / "manifest.json"
    if not run_dir.is_dir():
        what = "is not a directory" if run_dir.exists() else "does not exist"
        raise RecordError(f"run directory {str(run_dir)!r} {what}; expected a directory "
                          "with the manifest.json `nora train` writes (runs/<timestamp>/)")
    if not path.is_file():
        raise RecordError(f"run directory {str(run_dir)!r} has no manifest.json; expected a "
                          "directory written by `nora train` (runs/<timestamp>/)")
    manifest = read_object(path)
    where = repr(str(path))
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise RecordError(f"{where} lacks {', '.join(map(repr, missing))}: not a manifest "
                          "written by `nora train`")
    _check(manifest, MANIFEST_FIELDS, where)
    config = manifest["config"]
    _check(config, _CONFIG_FIELDS, f"{where} config")
    for group in _GROUPS:
        node = config.get(group)
        if node is not None and not (isinstance(node, dict) and isinstance(node.get("name"), str)):
            raise RecordError(f"{where}: config.{group} is {_show(node)}; expected an object "
                              "with a string 'name'")
    for i, change in enumerate(manifest.get("config_changes", [])):
        if not isinstance(change, dict):
            raise RecordError(f"{where}: config_changes[{i}] is {_show(change)}; expected an "
                              "object")
    for key in ("checkpoints", "checkpoints_pending"):
        for rel, digest in manifest.get(key, {}).items():
            if not isinstance(digest, str):
                raise RecordError(f"{where}: {key}[{rel!r}] is {_show(digest)}; expected a "
                                  "sha256 string")
    return manifest


def read_steps(path: str | Path) -> dict[int, dict[str, Any]] | None:
    """Step records of a ``metrics.jsonl`` by step (a repeated step, after a resume, keeps its
    last record); None when the file does not exist. Every record needs a ``kind``, step and
    eval records an int ``step``."""
    path = Path(path)
    if not path.is_file():
        return None
    steps: dict[int, dict[str, Any]] = {}
    for i, rec in enumerate(read_jsonl(path), 1):
        where = f"{str(path)!r} record {i}"
        _check(rec, _STEP_FIELDS, where)
        if "kind" not in rec:
            raise RecordError(f"{where} has no 'kind'; expected 'step', 'eval', ...")
        if rec["kind"] not in ("step", "eval"):
            continue
        if "step" not in rec:
            raise RecordError(f"{where} has no 'step'; expected an int")
        if rec["step"] < 0:
            raise RecordError(f"{str(path)!r} record {i}: 'step' is {rec['step']}; expected >= 0")
        if rec.get("kind") == "step":
            steps[rec["step"]] = rec
    return steps


def read_decisions(run_dir: str | Path) -> list[dict[str, Any]]:
    """``norms/agent_decisions.jsonl``: each decision names its ``agent_action``; the fields
    a report shows are of the documented type. ``[]`` when the run wrote none."""
    path = Path(run_dir) / "norms" / "agent_decisions.jsonl"
    out = read_jsonl(path)
    for i, rec in enumerate(out, 1):
        where = f"{str(path)!r} record {i}"
        if "agent_action" not in rec:
            raise RecordError(f"{where} has no 'agent_action'; expected a decision record")
        _check(rec, _DECISION_FIELDS, where)
    return out


def read_tensor_hashes(path: str | Path) -> dict[str, Any]:
    """``state/tensors.json``: ``{"step": int, "hashes": {name: hex}}``."""
    data = read_object(path)
    hashes = data.get("hashes")
    if not isinstance(hashes, dict) or not all(isinstance(v, str) for v in hashes.values()):
        raise RecordError(f"{str(path)!r}: 'hashes' is {_show(hashes)}; expected an object of "
                          "tensor name -> hash string")
    _check(data, {"step": "int?"}, repr(str(path)))
    return data


def read_repro_metrics(run_dir: str | Path) -> dict[str, Any]:
    """``norms/reproducibility_metrics.json`` checked; ``{}`` when the run wrote none."""
    path = Path(run_dir) / "norms" / "reproducibility_metrics.json"
    if not path.exists():
        return {}
    data = read_object(path)
    _check(data, _REPRO_FIELDS, repr(str(path)))
    for name, verdict in data.get("verdicts", {}).items():
        if not isinstance(verdict, dict):
            raise RecordError(f"{str(path)!r}: verdicts[{name!r}] is {_show(verdict)}; expected "
                              "an object with 'passed'")
    for key in ("detection_rate_pct", "avg_time_to_detection_sec"):
        if isinstance(data.get(key), float) and math.isnan(data[key]):
            data[key] = None
    return data


def load_state(path: str | Path) -> dict[str, Any]:
    """A saved state (``state/final.pt``) as data: ``torch.load(weights_only=True)``."""
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise RecordError(f"cannot load {str(path)!r}: {first_line(exc)}") from None
    if not isinstance(state, dict):
        raise RecordError(f"{str(path)!r} holds a {type(state).__name__}; expected a state dict")
    return state


def checkpoint_records(run_dir: str | Path) -> dict[str, dict[str, str]]:
    """The checkpoint checksums a run's manifest records: ``{"checkpoints": {relpath: sha},
    "checkpoints_pending": {...}}`` (empty when there is no manifest yet)."""
    path = Path(run_dir) / "manifest.json"
    if not path.exists():
        return {"checkpoints": {}, "checkpoints_pending": {}}
    manifest = read_object(path)
    out = {}
    for key in ("checkpoints", "checkpoints_pending"):
        value = manifest.get(key) or {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise RecordError(f"{str(path)!r}: {key!r} is {_show(value)}; expected an object "
                              "of relative path -> sha256")
        out[key] = dict(value)
    return out
