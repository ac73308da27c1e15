"""What a run directory recorded, and where two runs' records disagree: manifests and steps.

A run directory holds ``manifest.json`` (config, seeds, determinism switches, environment),
``metrics.jsonl`` (one ``{"kind": "step", ...}`` record per step, with the loss bits and a
parameter hash) and ``state/`` (``final.pt``, or only ``tensors.json`` with per-tensor hashes).
This module reads them and compares the records; ``nora.analysis.compare`` turns the result
into a verdict. The manifest diff is what explains a mismatch that comes from the environment.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nora.errors import RecordError
from nora.reader import load_state, read_object, read_steps, read_tensor_hashes

__all__ = ["MISSING", "THREADS_NOTE", "compare_steps", "diff_manifests", "format_step_table",
           "load_run", "manifest_line", "num", "run_cause"]

MISSING = "<missing>"   # stands for an absent manifest key or tensor in a manifest diff
THREADS_NOTE = "CPU float reductions depend on the thread count"
# Manifest sections compared key by key, and top-level keys compared whole.
_SECTIONS = ("config", "seeds", "determinism", "seams_at_start", "env")
_WHOLE = ("config_changes", "dataset_fingerprint", "resumed_from")
# Manifest key prefix -> what a difference there means, in the order a cause lists them.
_CAUSES = (("env.", "the environment differs"), ("seeds.", "the seeds differ"),
           ("determinism.", "the determinism settings differ"),
           ("seams_at_start.", "the settings in effect differ"), ("config", "the config differs"),
           ("dataset_", "the data differs"), ("resumed_from", "one run was resumed"))


# ---------------------------------------------------------------------------- reading
def load_run(path: Path) -> dict[str, Any]:
    """``{"manifest", "steps", "tensors", "state"}`` of a run directory; None where absent.

    Every file is read by ``nora.reader``, so a malformed one is a ``RecordError`` naming it.

    Raises:
        NoraError: ``path`` is not a directory, holds none of the records, or one is unreadable.
    """
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise RecordError(f"compare: run directory {str(path)!r} {what}")
    final, hashes = path / "state" / "final.pt", path / "state" / "tensors.json"
    manifest = path / "manifest.json"      # diffed key by key, whatever its shape
    run = {"manifest": read_object(manifest) if manifest.exists() else None,
           "steps": read_steps(path / "metrics.jsonl"),
           "tensors": read_tensor_hashes(hashes) if hashes.exists() else None,
           "state": load_state(final) if final.exists() else None}
    if all(v is None for v in run.values()):
        raise RecordError(f"compare: {str(path)!r} has no manifest.json, metrics.jsonl or "
                          "state/: not a run directory")
    return run


# ---------------------------------------------------------------------------- manifests
def _flat_manifest(m: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _SECTIONS:
        if isinstance(m.get(key), Mapping):
            _flatten_plain(m[key], f"{key}.", out)
    for key in _WHOLE:
        if key in m:
            out[key] = m[key]
    return out


def _flatten_plain(obj: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in obj.items():
        if isinstance(value, Mapping) and value:
            _flatten_plain(value, f"{prefix}{key}.", out)
        else:
            out[f"{prefix}{key}"] = value


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def diff_manifests(ma: Mapping[str, Any], mb: Mapping[str, Any]) -> dict[str, tuple]:
    """Flattened key (``env.torch_threads``) -> (a, b) for every key whose values differ."""
    fa, fb = _flat_manifest(ma), _flat_manifest(mb)
    diff = {}
    for key in list(fa) + [k for k in fb if k not in fa]:
        va, vb = fa.get(key, MISSING), fb.get(key, MISSING)
        if _canon(va) != _canon(vb):
            diff[key] = (va, vb)
    return diff


def manifest_line(key: str, pair: tuple) -> str:
    """One report line for a manifest difference."""
    note = f" ({THREADS_NOTE})" if key == "env.torch_threads" else ""
    return f"manifest {key}: {pair[0]!r} != {pair[1]!r}{note}"


# ---------------------------------------------------------------------------- steps
def num(v: Any) -> str:
    """A float32 loss needs 9 significant digits to show which bits differ."""
    return "-" if v is None else f"{v:.9g}" if isinstance(v, float) else str(v)


def _step_problem(ra: dict | None, rb: dict | None, labels: tuple[str, str]) -> str | None:
    if ra is None or rb is None:
        return f"only {labels[0] if rb is None else labels[1]} has this step"
    problems = []
    if "loss_bits" in ra and "loss_bits" in rb:
        if ra["loss_bits"] != rb["loss_bits"]:
            problems.append(f"loss {num(ra.get('loss'))} != {num(rb.get('loss'))} "
                            f"(bits {ra['loss_bits']} != {rb['loss_bits']})")
    elif repr(ra.get("loss")) != repr(rb.get("loss")):
        problems.append(f"loss {num(ra.get('loss'))} != {num(rb.get('loss'))}")
    if "param_hash" in ra and "param_hash" in rb and ra["param_hash"] != rb["param_hash"]:
        problems.append("parameter hash differs")
    return "; ".join(problems) or None


def compare_steps(sa: dict[int, dict], sb: dict[int, dict], labels: tuple[str, str]
                  ) -> tuple[int | None, list[str], list[dict[str, Any]]]:
    """(first divergent step, problem lines, table of the steps around it); None if equal."""
    steps = sorted(set(sa) | set(sb))
    bad = [(s, p) for s in steps if (p := _step_problem(sa.get(s), sb.get(s), labels))]
    if not bad:
        return None, [], []
    first, problem = bad[0]
    details = [f"step {first}: {problem}"]
    if len(bad) > 1:
        details.append(f"{len(bad) - 1} later step(s) differ too (last: step {bad[-1][0]})")
    bad_steps = {s for s, _ in bad}
    i = steps.index(first)
    table = []
    for s in steps[max(0, i - 2): i + 3]:
        ra, rb = sa.get(s, {}), sb.get(s, {})
        params = "-"
        if "param_hash" in ra and "param_hash" in rb:
            params = "same" if ra["param_hash"] == rb["param_hash"] else "differs"
        table.append({"step": s, "loss_a": ra.get("loss"), "loss_b": rb.get("loss"),
                      "params": params, "diverged": s in bad_steps})
    return first, details, table


def format_step_table(rows: list[dict[str, Any]]) -> list[str]:
    """The rows of ``compare_steps`` as report lines, the divergent ones marked ``>``."""
    out = [f"  {'':2}{'step':>6}  {'loss A':>16}  {'loss B':>16}  params"]
    for r in rows:
        mark = "> " if r["diverged"] else "  "
        out.append(f"  {mark}{r['step']:>6}  {num(r['loss_a']):>16}  {num(r['loss_b']):>16}"
                   f"  {r['params']}")
    return out


def run_cause(first: int | None, table: list[dict], divergent_phrase: str,
              manifest_diff: dict[str, tuple], structural: bool) -> str:
    """Why two runs differ, most telling first: environment, seeds, settings, config, steps."""
    parts = []
    for group, what in _CAUSES:
        keys = [k for k in manifest_diff if k.startswith(group)]
        if keys:
            parts.append(f"{what} ({', '.join(keys)})")
    if structural:
        parts.append("the runs did not record the same things")
    if first is not None:
        row = next(r for r in table if r["step"] == first)
        what = (f"loss {num(row['loss_a'])} vs {num(row['loss_b'])}"
                if row["loss_a"] != row["loss_b"] else "parameters differ, loss equal")
        parts.append(f"first divergence at step {first} ({what})")
    if divergent_phrase:
        parts.append(divergent_phrase)
    if not manifest_diff and not structural:
        parts.insert(0, "same config and environment, so the run is nondeterministic")
    return "; ".join(parts)
