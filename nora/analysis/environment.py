"""Does a training function's result depend on the environment it runs in?

``check_environment`` reruns a user's function (the contract of ``check_reproducible``:
``fn(seed, *args, **kwargs)`` returns tensors, a state dict or a module) under one setting
changed at a time: the torch intra-op thread count, and on GPU ``cudnn.benchmark``. It first
reruns the reference settings once more, so that plain nondeterminism (the user's bug) is not
mistaken for an environment effect. A difference that appears only when a setting changes is
*environment sensitivity*: on CPU a float reduction over a large tensor is summed in a
different order by 1 and 2 threads. That is not a bug in the function; it means the setting
belongs in the run's record (NORA's manifest has ``env.torch_threads``) and must match when
results are compared bit for bit. The caller's settings are restored afterwards.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from nora.analysis.compare import compare
from nora.analysis.isolation import run_once
from nora.analysis.rundir import THREADS_NOTE
from nora.errors import NoraError

__all__ = ["EnvironmentReport", "check_environment"]

_HINTS = {
    "torch_threads": (f"{THREADS_NOTE}: pin the thread count (torch.set_num_threads) and record "
                      "it (NORA's manifest does, as env.torch_threads); compare bit for bit "
                      "only runs with the same count, keep one golden per thread count, or "
                      "allow a tolerance across counts (atol >= the max |a-b| above)."),
    "cudnn_benchmark": ("cuDNN autotuning picks the fastest kernel by timing it, so the kernel "
                        "(and the bits) can change from run to run: keep "
                        "torch.backends.cudnn.benchmark = False for reproducible runs "
                        "(nora.seed_everything(seed) does)."),
}


@dataclass(frozen=True)
class EnvironmentReport:
    """What ``check_environment`` found: one check per changed setting, findings for each
    difference. ``sensitive`` means a result depends on a setting (environment sensitivity,
    not a bug in ``fn``); ``reproducible`` is False when reruns with the same settings differ.
    """

    function: str
    seed: Any
    isolation: str
    reference: dict[str, Any]            # the settings every check changes one of
    reproducible: bool                   # the rerun with the reference settings was identical
    checks: list[dict[str, Any]]         # one per changed setting, identical or not
    findings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sensitive(self) -> bool:
        """True when a result depends on an environment setting."""
        return any(f["kind"] == "environment_sensitivity" for f in self.findings)

    def report(self) -> str:
        """A readable summary: reference, every check, the findings and a hint."""
        ref = ", ".join(f"{k}={v}" for k, v in self.reference.items())
        lines = [f"Environment sensitivity of {self.function} (seed {self.seed!r}, "
                 f"isolation={self.isolation}); reference settings: {ref}"]
        for check in self.checks:
            what = "identical" if check["identical"] else "DIFFERS: " + _how(check)
            lines.append(f"  {check['label']}: {what}")
        if not self.findings:
            lines.append("No findings: the result does not depend on these settings.")
            return "\n".join(lines)
        lines.append(f"Findings ({len(self.findings)}):")
        lines += [f"  - {f['message']}" for f in self.findings]
        hints = dict.fromkeys(f["hint"] for f in self.findings)     # one per setting
        return "\n".join(lines + [f"Hint: {h}" for h in hints])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (a non-finite ``max_abs_diff`` becomes a string)."""
        return {"function": self.function, "seed": self.seed, "isolation": self.isolation,
                "reference": dict(self.reference), "reproducible": self.reproducible,
                "sensitive": self.sensitive, "checks": [_plain(c) for c in self.checks],
                "findings": [_plain(f) for f in self.findings]}


def check_environment(fn: Callable[..., Any], *, seed: Any, threads: Sequence[int] = (1, 2),
                      cudnn_benchmark: Sequence[bool] | None = None,
                      isolation: Literal["inprocess", "process"] = "inprocess",
                      args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                      timeout: float = 120.0) -> EnvironmentReport:
    """Rerun ``fn(seed, *args, **kwargs)`` with one environment setting changed at a time.

    The reference run uses ``threads[0]`` and ``cudnn_benchmark[0]`` (or the current value);
    it is rerun once unchanged, then once per other value of each setting, each compared
    with ``nora.compare`` against the reference.

    Args:
        fn: the training function (module-level for ``isolation="process"``).
        seed: passed to ``fn``.
        threads: torch intra-op thread counts to try (distinct positive ints).
        cudnn_benchmark: values of ``torch.backends.cudnn.benchmark`` to try; ``None`` means
            ``(False, True)`` when CUDA is available and not checked otherwise.
        isolation: ``"inprocess"`` calls ``fn`` here; ``"process"`` forks each run from one
            warm interpreter (one ``PYTHONHASHSEED`` for all, so only the setting changes).
        timeout: seconds a process run may take.

    Raises:
        NoraError: bad arguments, or nothing to vary.
        ReplicaError: ``fn`` raised, died or timed out.
    """
    threads = _check_values("threads", threads, lambda v: isinstance(v, int)
                            and not isinstance(v, bool) and v > 0, "positive ints")
    if cudnn_benchmark is None:
        cudnn_benchmark = (False, True) if torch.cuda.is_available() else ()
    bench = _check_values("cudnn_benchmark", cudnn_benchmark,
                          lambda v: isinstance(v, bool), "bools")
    if isolation not in ("inprocess", "process"):
        raise NoraError(f"check_environment: isolation must be 'inprocess' or 'process', "
                        f"got {isolation!r}")
    if len(threads) < 2 and len(bench) < 2:
        raise NoraError(f"check_environment: nothing to vary: threads={threads!r}, "
                        f"cudnn_benchmark={bench!r}; give two values of one of them")
    reference = {"torch_threads": threads[0] if threads else torch.get_num_threads(),
                 "cudnn_benchmark": bench[0] if bench else bool(torch.backends.cudnn.benchmark)}
    variants = [("torch_threads", t) for t in threads[1:]]
    variants += [("cudnn_benchmark", b) for b in bench[1:]]

    def run(settings: dict[str, Any], label: str) -> Any:
        with _applied(settings):
            return run_once(fn, seed, isolation=isolation, label=label, args=args,
                            kwargs=kwargs, timeout=timeout)

    ref_label = _label(reference)
    base = run(reference, f"reference ({ref_label})")
    checks = [_check("rerun", None, None, f"rerun with the same settings ({ref_label})",
                     base, run(reference, f"rerun ({ref_label})"), ref_label)]
    for name, value in variants:
        label = f"{name}={value}"
        checks.append(_check("setting", name, value, label,
                             base, run(dict(reference, **{name: value}), label), ref_label))
    return EnvironmentReport(_name(fn), seed, isolation, reference, checks[0]["identical"],
                             checks, _findings(checks, reference, _name(fn)))


@contextmanager
def _applied(settings: dict[str, Any]) -> Iterator[None]:
    """Apply torch settings for one run and restore the caller's afterwards."""
    threads, bench = torch.get_num_threads(), torch.backends.cudnn.benchmark
    try:
        torch.set_num_threads(settings["torch_threads"])
        torch.backends.cudnn.benchmark = settings["cudnn_benchmark"]
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = bench


def _check_values(name: str, values: Any, ok: Callable[[Any], bool], what: str) -> tuple:
    values = tuple(values) if isinstance(values, (list, tuple)) else values
    if not isinstance(values, tuple) or not all(ok(v) for v in values) or \
            len(set(values)) != len(values):
        raise NoraError(f"check_environment: {name} must be a sequence of distinct {what}, "
                        f"got {values!r}")
    return values


def _check(kind: str, setting: str | None, value: Any, label: str, a: Any, b: Any,
           ref_label: str) -> dict[str, Any]:
    c = compare(a, b, labels=(f"reference ({ref_label})", label))
    return {"kind": kind, "setting": setting, "value": value, "label": label,
            "identical": c.identical, "max_abs_diff": c.max_abs_diff,
            "divergent_tensors": list(c.divergent_tensors), "details": list(c.details),
            "first_stage": _first_stage(a, c.divergent_tensors)}


def _first_stage(result: Any, divergent: list[str]) -> str | None:
    """For a result with stages as top-level keys, in order (``{"initial_weights": ...,
    "trained": ...}``), the first stage holding a divergent tensor: where the
    sensitivity starts (SB3's PPO differs across thread counts already as built)."""
    if not isinstance(result, Mapping) or len(result) < 2 or not divergent:
        return None
    for stage in result:
        if any(name == str(stage) or name.startswith(f"{stage}.") for name in divergent):
            return str(stage)
    return None


def _findings(checks: list[dict[str, Any]], reference: dict[str, Any],
              function: str) -> list[dict[str, Any]]:
    rerun, settings = checks[0], checks[1:]
    if not rerun["identical"]:        # differences cannot be blamed on the settings
        return [{"kind": "nondeterminism", "setting": None, "reference": None, "value": None,
                 "max_abs_diff": rerun["max_abs_diff"],
                 "divergent_tensors": rerun["divergent_tensors"],
                 "message": f"{function} is not reproducible even with the same settings "
                            f"({_how(rerun)}); this is a bug in the function, not environment "
                            "sensitivity, and the setting checks cannot be judged",
                 "hint": "make the function reproducible first (nora.check_reproducible "
                         "names what differs): seed every RNG from `seed`, no unordered data "
                         "loading, no nondeterministic kernels."}]
    return [{"kind": "environment_sensitivity", "setting": c["setting"],
             "reference": reference[c["setting"]], "value": c["value"],
             "max_abs_diff": c["max_abs_diff"], "divergent_tensors": c["divergent_tensors"],
             "first_stage": c["first_stage"],
             "message": f"environment sensitivity: the result depends on {c['setting']} "
                        f"({reference[c['setting']]} vs {c['value']}: {_how(c)})"
                        + (f"; it starts in {c['first_stage']}" if c["first_stage"] else "")
                        + "; reruns with the same settings are identical, so this is not a "
                          "bug in the function",
             "hint": _HINTS[c["setting"]]}
            for c in settings if not c["identical"]]


def _how(check: dict[str, Any]) -> str:
    names = check["divergent_tensors"]
    more = f" (+{len(names) - 1} more)" if len(names) > 1 else ""
    first = f"{len(names)} tensor(s) differ, first {names[0]}{more}" if names else "differs"
    m = check["max_abs_diff"]
    return f"{first}, max |a-b| = {m:.6g}" if 0 < m < math.inf else first


def _label(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def _name(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    out = {k: list(v) if isinstance(v, list) else v for k, v in d.items()}
    m = out.get("max_abs_diff")
    if isinstance(m, float) and not math.isfinite(m):
        out["max_abs_diff"] = str(m)
    return out
