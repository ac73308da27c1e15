"""Where two runs (or two states) part ways, and why: the verdict behind ``nora compare``.

Bitwise equality is the default verdict for reruns on one machine, so tensors are compared by
content hash first and the float64 max |a-b| is only computed to say how far apart they are.
For run directories the per-step records give the first divergent step and the manifests
give the likely cause (thread count, versions, config, data), which a bare diff cannot.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nora.analysis.attribution import attribute
from nora.analysis.rundir import (MISSING, THREADS_NOTE, compare_steps, diff_manifests,
                                  format_step_table, load_run, manifest_line, run_cause)
from nora.errors import NoraError, one_line
from nora.hashing import fingerprint

__all__ = ["MISSING", "Comparison", "assert_identical", "compare", "main"]

_ROOT = "<tensor>"      # the name of a bare tensor / array (not inside a state dict)


@dataclass(frozen=True)
class Comparison:
    """The verdict of ``compare``: ``identical`` means bit-identical results."""

    identical: bool
    max_abs_diff: float                 # over the (final) state; inf when structure differs
    first_divergent_step: int | None
    divergent_tensors: list[str]        # in state order, first ones first
    manifest_diff: dict[str, tuple]     # flattened key -> (a, b); MISSING where absent
    details: list[str]                  # every problem, one line each
    cause: str = ""
    hint: str = ""
    step_table: list[dict[str, Any]] = field(default_factory=list)
    labels: tuple[str, str] = ("A", "B")

    def report(self) -> str:
        """A readable message: cause, every problem, steps around the divergence, a hint."""
        a, b = self.labels
        if self.identical:
            lines = [f"{a} and {b} are bit-identical."]
            if self.manifest_diff:
                lines.append("Their manifests differ, without effect on the results:")
                lines += [f"  - {d}" for d in self.details]
            return "\n".join(lines + [f"Hint: {self.hint}"])
        lines = [f"{a} and {b} differ: {self.cause}", f"Problems ({len(self.details)}):"]
        lines += [f"  - {d}" for d in self.details]
        if self.step_table:
            lines.append(f"Steps around the first divergence (step {self.first_divergent_step}):")
            lines += format_step_table(self.step_table)
        if 0 < self.max_abs_diff < math.inf:
            lines.append(f"Max |a-b| over the (final) state: {self.max_abs_diff:.6g}")
        return "\n".join(lines + [f"Hint: {self.hint}"])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: tuples become lists, a non-finite ``max_abs_diff`` becomes a string."""
        out = asdict(self)
        out["manifest_diff"] = {k: list(v) for k, v in self.manifest_diff.items()}
        out["labels"] = list(self.labels)
        m = self.max_abs_diff
        out["max_abs_diff"] = m if math.isfinite(m) else str(m)
        return out


def compare(a: Any, b: Any, *, labels: tuple[str, str] | None = None) -> Comparison:
    """Compare two tensors, arrays, (nested) state dicts or modules, or two run directories.

    Args:
        a, b: both run directories (``str`` or ``Path``) or run results (``RunResult``,
            a monitored run's ``MonitorResult``: compared through their run directories),
            or both in-memory objects.
        labels: names of the two sides in the report (default the paths, or "A" and "B").
    """
    a, b = _run_dir_of(a), _run_dir_of(b)
    a_path, b_path = isinstance(a, (str, os.PathLike)), isinstance(b, (str, os.PathLike))
    if a_path and b_path:
        pa, pb = Path(a), Path(b)
        return _compare_runs(pa, pb, labels or (str(pa), str(pb)))
    if a_path or b_path:
        raise NoraError(f"compare: got a path and a {type(b if a_path else a).__name__}; "
                        "pass two run directories or two in-memory states")
    labels = labels or ("A", "B")
    flat_a, flat_b = _flatten(a), _flatten(b)
    if isinstance(a, (torch.Tensor, np.ndarray)) != isinstance(b, (torch.Tensor, np.ndarray)):
        raise NoraError(f"compare: cannot compare a {type(a).__name__} with a {type(b).__name__}")
    divergent, details, max_diff, structural = _compare_states(flat_a, flat_b, labels)
    cause = _state_cause(divergent, structural)
    hint = _hint(structural, {}, None, None) if divergent else _identical_hint({})
    return Comparison(not divergent, max_diff, None, divergent, {}, details, cause, hint,
                      [], labels)


def _run_dir_of(x: Any) -> Any:
    """A run's result (anything with ``run_dir`` and ``fingerprint``) stands for its run
    directory, which holds its manifest, step records and final state."""
    if isinstance(x, (str, os.PathLike, Mapping, torch.Tensor, np.ndarray, torch.nn.Module)):
        return x
    run_dir = getattr(x, "run_dir", None)
    if run_dir is not None and hasattr(x, "fingerprint"):
        return Path(run_dir)
    return x


def assert_identical(a: Any, b: Any, *, atol: float = 0.0) -> Comparison:
    """``assert`` for tests: raise AssertionError with the full report unless a equals b.

    ``atol`` > 0 accepts a final-state max |a-b| up to it (a documented tolerance, e.g. a
    GPU kernel without a deterministic implementation); bitwise is the default.
    """
    result = compare(a, b)
    if not (result.identical or (atol > 0 and result.max_abs_diff <= atol)):
        raise AssertionError(result.report())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nora compare RUN_A RUN_B``: 0 identical, 1 different, 2 bad usage."""
    parser = argparse.ArgumentParser(prog="python -m nora compare",
                                     description="Compare two run directories.")
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:           # argparse already printed the usage message
        return 0 if exc.code == 0 else 2
    try:
        result = compare(Path(ns.run_a), Path(ns.run_b))
    except NoraError as exc:
        print(f"nora: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(result.to_dict(), indent=2) if ns.json else result.report())
    return 0 if result.identical else 1


# ---------------------------------------------------------------------------- states
def _flatten(obj: Any, prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Nested state -> {dotted name: leaf}, in state order (optimizer ``state.0.exp_avg``)."""
    out = {} if out is None else out
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            _flatten(value, f"{prefix}{key}.", out)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _flatten(value, f"{prefix}{i}.", out)
    else:
        out[prefix[:-1] or _ROOT] = obj
    return out


def _max_abs_diff(x: torch.Tensor, y: torch.Tensor) -> float:
    """float64 max |x-y|; equal values (inf, NaN with NaN) count 0, NaN against a number inf."""
    kind = torch.complex128 if (x.is_complex() or y.is_complex()) else torch.float64
    a, b = x.detach().cpu().to(kind), y.detach().cpu().to(kind)
    if a.numel() == 0:
        return 0.0
    same = (a == b) | (torch.isnan(a) & torch.isnan(b))
    d = torch.where(same, torch.zeros((), dtype=torch.float64), (a - b).abs())
    return float(torch.nan_to_num(d, nan=math.inf).max())


def _as_tensor(x: Any) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray) and x.dtype.kind in "biufc":
        return torch.from_numpy(np.ascontiguousarray(x))
    return None


def _compare_leaf(x: Any, y: Any) -> tuple[str | None, float, bool]:
    """(problem or None, |x-y|, structural?) for one named leaf."""
    try:
        if fingerprint(x) == fingerprint(y):
            return None, 0.0, False
    except TypeError as exc:
        raise NoraError(f"compare: {exc}") from exc
    if type(x) is not type(y) and not (_is_number(x) and _is_number(y)):
        return f"type differs ({type(x).__name__} vs {type(y).__name__})", math.inf, True
    tx, ty = _as_tensor(x), _as_tensor(y)
    if tx is not None and ty is not None:
        if tuple(tx.shape) != tuple(ty.shape):
            return f"shape differs ({tuple(tx.shape)} vs {tuple(ty.shape)})", math.inf, True
        diff = _max_abs_diff(tx, ty)
        if tx.dtype != ty.dtype:
            return f"dtype differs ({tx.dtype} vs {ty.dtype}), max |a-b| = {diff:.6g}", diff, True
        if diff == 0:
            return "bits differ but values are equal (signed zeros or NaN payloads)", 0.0, False
        return f"values differ, max |a-b| = {diff:.6g}", diff, False
    if _is_number(x) and _is_number(y):
        diff = abs(float(x) - float(y))
        return f"{x!r} != {y!r}", diff if not math.isnan(diff) else math.inf, False
    return f"{x!r} != {y!r}", math.inf, False


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _compare_states(fa: dict[str, Any], fb: dict[str, Any],
                    labels: tuple[str, str]) -> tuple[list[str], list[str], float, bool]:
    divergent, details, max_diff, structural = [], [], 0.0, False
    for name in list(fa) + [k for k in fb if k not in fa]:
        if name not in fb or name not in fa:
            missing_in = labels[1] if name not in fb else labels[0]
            problem, diff, struct = f"missing in {missing_in}", math.inf, True
        else:
            problem, diff, struct = _compare_leaf(fa[name], fb[name])
        if problem is not None:
            divergent.append(name)
            details.append(f"{name}: {problem}" if name == _ROOT else f"tensor {name}: {problem}")
            max_diff, structural = max(max_diff, diff), structural or struct
    return divergent, details, max_diff, structural


def _tensors_phrase(divergent: list[str]) -> str:
    more = f" (+{len(divergent) - 1} more)" if len(divergent) > 1 else ""
    return f"{len(divergent)} tensor(s) differ, first {divergent[0]}{more}"


def _state_cause(divergent: list[str], structural: bool) -> str:
    if not divergent:
        return ""
    what = "the states do not hold the same tensors" if structural else "values differ"
    return f"{what}: {_tensors_phrase(divergent)}"


# ---------------------------------------------------------------------------- run dirs
def _compare_runs(pa: Path, pb: Path, labels: tuple[str, str]) -> Comparison:
    ra, rb = load_run(pa), load_run(pb)
    manifest_diff: dict[str, tuple] = {}
    if ra["manifest"] is not None and rb["manifest"] is not None:
        manifest_diff = diff_manifests(ra["manifest"], rb["manifest"])
    details = [f"{label} has no {what}"                    # recorded by one run only
               for key, what in (("manifest", "manifest.json"), ("steps", "metrics.jsonl"),
                                 ("state", "state/final.pt"))
               for run, other, label in ((ra, rb, labels[0]), (rb, ra, labels[1]))
               if run[key] is None and other[key] is not None]
    structural = bool(details)
    first, table = None, []
    if ra["steps"] is not None and rb["steps"] is not None:
        _from_resume(ra, rb)
        first, step_details, table = compare_steps(ra["steps"], rb["steps"], labels)
        details += step_details
    divergent, max_diff = [], 0.0
    if ra["state"] is not None and rb["state"] is not None:
        divergent, tensor_details, max_diff, struct = _compare_states(
            _flatten(ra["state"]), _flatten(rb["state"]), labels)
        details, structural = details + tensor_details, structural or struct
    elif ra["tensors"] is not None and rb["tensors"] is not None:   # hashes only: no values
        ha, hb = ra["tensors"].get("hashes", {}), rb["tensors"].get("hashes", {})
        divergent = [k for k in [*ha, *(k for k in hb if k not in ha)] if ha.get(k) != hb.get(k)]
        details += [f"tensor {k}: hash differs" for k in divergent]
        structural = structural or set(ha) != set(hb)
    identical = not details
    details += [manifest_line(k, v) for k, v in manifest_diff.items()]
    recorded = [*(ra["steps"] or ()), *(rb["steps"] or ())]
    phrase = _tensors_phrase(divergent) if divergent else ""
    cause = "" if identical else run_cause(first, table, phrase, manifest_diff, structural)
    hint = (_identical_hint(manifest_diff) if identical else
            _hint(structural, manifest_diff, first, min(recorded, default=None)))
    why = None
    if first is not None and ra["steps"] is not None and rb["steps"] is not None:
        why = attribute(first, ra["steps"].get(first), rb["steps"].get(first),
                        manifest_diff.get("env.torch_threads"))
    if why is not None and not structural:
        cause, hint = f"{why.message}; {cause}" if cause else why.message, why.hint
    return Comparison(identical, math.inf if structural else max_diff, first, divergent,
                      manifest_diff, details, cause, hint, table, labels)


def _from_resume(ra: dict[str, Any], rb: dict[str, Any]) -> None:
    """A resumed run records only the steps after its checkpoint: compare from there."""
    for run, other in ((ra, rb), (rb, ra)):
        if (run["manifest"] or {}).get("resumed_from") and run["steps"]:
            start = min(run["steps"])
            other["steps"] = {s: r for s, r in other["steps"].items() if s >= start}


def _hint(structural: bool, manifest_diff: Mapping[str, tuple], first: int | None,
          first_recorded: int | None) -> str:
    keys = list(manifest_diff)
    if structural:
        return ("the two sides do not hold the same tensors or records: compare runs of the "
                "same model, and save the full state (model, optimizer, scheduler, scaler, RNG).")
    if any(k.startswith("seeds.") for k in keys):
        return "the runs used different seeds; rerun with the seed recorded in the manifest."
    if any(k.startswith(("determinism.", "seams_at_start.")) for k in keys):
        return ("determinism switches differ between the runs: turn deterministic algorithms on, "
                "cudnn.benchmark off and keep the DataLoader in order (no unordered workers).")
    if "env.torch_threads" in keys:
        a, b = manifest_diff["env.torch_threads"]
        return (f"rerun with the recorded thread count (torch.set_num_threads({a}), not {b}): "
                f"{THREADS_NOTE}, so this is environment sensitivity, not a bug in the run.")
    if any(k.startswith("env.") for k in keys):
        return ("library versions, device or platform differ: compare runs from one "
                "environment, or keep a golden per platform.")
    if "dataset_fingerprint" in keys:
        return "the data differs: rerun on the dataset whose fingerprint the manifest records."
    if "resumed_from" in keys:
        return ("a resumed run differs from the uninterrupted one: save and restore the full "
                "state (optimizer, scheduler, scaler, RNG, data position).")
    if keys:
        return ("the configs differ: replay the recorded config (python -m nora replay RUN), "
                "and record every change made during a run as a tracked config change.")
    if first is not None and first == first_recorded:
        return ("results differ from the first recorded step: initialization or data order is "
                "not seeded; call nora.seed_everything(seed) or pass seeded generators.")
    return ("look for nondeterminism (from the first divergence on): an unseeded RNG, unordered "
            "data loading (DataLoader workers), nondeterministic kernels, iteration over a set "
            "of strings (PYTHONHASHSEED), or an untracked mid-run config change.")


def _identical_hint(manifest_diff: Mapping[str, tuple]) -> str:
    if manifest_diff:
        return "nothing to fix; the manifest differences did not change the results."
    return "nothing to fix."
