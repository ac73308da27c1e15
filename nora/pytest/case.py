"""One test case as NORA sees it: what it trains (``CaseSpec``), what it recorded
(``CaseState``), and the objects its fixtures hand out (``SeededTrainer``, ``Recorder``,
``DDPGroup``). Records are plain dicts built by ``nora.session_report.case_record``."""
from __future__ import annotations

import functools
import json
import re
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nora.pytest.options import AXES, NoraOptions, config_defaults

MARKER_KEYS = ("trainer", "mode", "regime", "violation", "seeds", "overrides", "golden",
               "max_ci_width", "metric", "verify")
_GROUP = {"mode": "modes", "regime": "regime", "violation": "violation", "trainer": "trainer"}


def _choices(axis: str) -> list[str]:
    """Presets of an axis, and for trainers and violations every registered name too."""
    from nora.config.compose import group_choices

    found = group_choices(_GROUP[axis])
    if axis in ("trainer", "violation"):
        from nora.registry import names
        found = sorted(set(found) | set(names(axis)))
    return found


def case_name(nodeid: str) -> str:
    """A directory name for a test id: ``experiments.test_x.test_y.norm_aware-strict-none``."""
    path, _, rest = nodeid.partition("::")
    name = f"{path.removesuffix('.py').replace('/', '.')}.{rest.replace('::', '.')}"
    name = re.sub(r"[^A-Za-z0-9._=+-]", "_", name.replace("[", ".").replace("]", ""))
    if len(name) > 120:
        name = f"{name[:110]}-{zlib.crc32(nodeid.encode()):08x}"
    return name


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def marker_values(marker: pytest.Mark | None, axis: str) -> list[str] | None:
    """The value(s) a ``nora(...)`` marker fixes for one axis, or None."""
    if marker is None or marker.kwargs.get(axis) is None:
        return None
    return [str(v) for v in _as_list(marker.kwargs[axis])]


@dataclass(frozen=True)
class CaseSpec:
    """What one collected case trains: from its parameters, its marker and the options."""

    test_id: str
    case: str
    trainer: str
    mode: str
    regime: str
    violation: str
    seeds: tuple[int, ...] | None
    overrides: tuple[str, ...]
    golden: bool = False
    max_ci_width: float | None = None
    metric: str | None = None
    per_test_seed: bool = False   # seeds are base + crc32(test id), not chosen by the user
    verify: float | None = None   # nora verify each finished run within this budget

    @classmethod
    def from_item(cls, item: pytest.Item, options: NoraOptions) -> CaseSpec:
        """Raises ValueError (with the marker and the choices in the message) on a bad marker."""

        marker = item.get_closest_marker("nora")
        kwargs = dict(marker.kwargs) if marker else {}
        unknown = sorted(set(kwargs) - set(MARKER_KEYS))
        if unknown or (marker and marker.args):
            raise ValueError(f"@pytest.mark.nora: unknown argument(s) "
                             f"{unknown or list(marker.args)}; valid: {', '.join(MARKER_KEYS)}")
        params = getattr(item, "callspec", None)
        params = params.params if params is not None else {}
        values: dict[str, str | None] = {}
        for axis in ("trainer", *AXES):
            fixed = params.get(axis) if axis in AXES else None
            given = marker_values(marker, axis)
            value = fixed if fixed is not None else (given[0] if given else None)
            if given and len(given) > 1 and fixed is None:
                raise ValueError(f"@pytest.mark.nora({axis}={given!r}): a list only works "
                                 f"for a test that takes the `{axis}` fixture")
            if value is not None and value not in _choices(axis):
                raise ValueError(f"@pytest.mark.nora({axis}={value!r}): not a known {axis}; "
                                 f"choices: {', '.join(_choices(axis))}")
            values[axis] = value if value is not None else config_defaults()[axis]
        seeds = kwargs.get("seeds")
        if seeds is not None:
            seeds = _as_list(seeds)
            if not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
                raise ValueError(f"@pytest.mark.nora(seeds={seeds!r}): expected a non-empty "
                                 "list of non-negative integers")
        overrides = tuple(str(o) for o in _as_list(kwargs.get("overrides") or []))
        width = kwargs.get("max_ci_width")
        if width is not None and not (isinstance(width, (int, float)) and width > 0):
            raise ValueError(f"@pytest.mark.nora(max_ci_width={width!r}): expected a "
                             "positive number (the widest 95% CI of the metric across seeds)")
        verify = kwargs.get("verify")
        if verify is True:
            verify = 0.05
        if verify is not None and verify is not False and not (
                isinstance(verify, (int, float)) and 0 < verify <= 1):
            raise ValueError(f"@pytest.mark.nora(verify={verify!r}): expected True or a "
                             "budget in (0, 1] (the fraction of steps to replay)")
        chosen = tuple(seeds) if seeds is not None else options.seeds
        per_test = None
        if chosen is None and not any(o.partition("=")[0].lstrip("+~") == "seed"
                                      for o in overrides):
            from nora.pytest.seeds import per_test_seed, seed_base

            base = seed_base(item.config, options.overrides)
            per_test = None if base is None else (per_test_seed(base, item.nodeid),)
        return cls(test_id=item.nodeid, case=case_name(item.nodeid),
                   trainer=values["trainer"], mode=values["mode"],
                   regime=values["regime"], violation=values["violation"],
                   seeds=chosen or per_test, overrides=overrides,
                   golden=bool(kwargs.get("golden", False)), max_ci_width=width,
                   metric=kwargs.get("metric"), per_test_seed=per_test is not None,
                   verify=float(verify) if verify else None)

    def as_dict(self) -> dict[str, Any]:
        return {"trainer": self.trainer, "mode": self.mode, "regime": self.regime,
                "violation": self.violation}


def plain(value: Any) -> Any:
    """A JSON-able copy of a user metric (tensor and numpy scalars become numbers)."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return repr(value)


@dataclass
class CaseState:
    """What a case recorded so far; flushed into its teardown report as plain dicts."""

    spec: CaseSpec
    worker: str
    records: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: int = 0
    test_outcome: str | None = None

    def flush(self) -> list[dict[str, Any]]:
        """Every record of the case, with its user metrics, verdicts and test outcome."""
        records = self.records
        if not records and (self.metrics or self.verdicts):
            from nora.session_report import case_record

            records = [case_record(None, test_id=self.spec.test_id, case=self.spec.case,
                                   worker=self.worker, spec=self.spec.as_dict())]
        out = []
        for rec in records:
            rec = dict(rec)
            verdicts = {**rec.get("verdicts", {}), **self.verdicts}
            rec.update(metrics={**rec.get("metrics", {}), **self.metrics}, verdicts=verdicts,
                       verdicts_passed=(all(v["passed"] for v in verdicts.values())
                                        if verdicts else None),
                       test_outcome=self.test_outcome)
            out.append(json.loads(json.dumps(rec, default=str)))   # plain data, for xdist
        self.records = []
        return out


@functools.lru_cache(maxsize=512)
def _load(overrides: tuple[str, ...]) -> Any:
    from nora import load_config

    return load_config(list(overrides))


class SeededTrainer:
    """Trains the case's config, seeded, into the session's run directories.

    ``fit()`` runs the first seed (raising ``NormViolationError`` on a halt, as
    ``nora.train`` does); ``fit(seed=s)`` any seed; ``fit_all()`` every seed of the case and
    returns halted runs' results instead of raising. Every run becomes one report row.
    """

    def __init__(self, spec: CaseSpec, state: CaseState, *, runs_dir: Path, device: str,
                 overrides: Sequence[str], node: pytest.Item,
                 golden: GoldenCheck | None = None) -> None:
        self.spec, self.trainer, self._state = spec, spec.trainer, state
        self._golden = golden
        self._runs_dir, self._device, self._node = runs_dir, device, node
        self._overrides = tuple(overrides)
        self.seeds: list[int | None] = list(spec.seeds) if spec.seeds else [self.config_for().seed]

    @property
    def config(self) -> Any:
        """The case's ``RunConfig`` for its first seed."""
        return self.config_for()

    def config_for(self, seed: int | None = None, overrides: Sequence[str] = ()) -> Any:
        s = self.spec
        ovs = [f"trainer={s.trainer}"]
        ovs += [f"{_GROUP[a]}={getattr(s, a)}" for a in AXES]
        if seed is None and s.seeds:
            seed = s.seeds[0]
        if seed is not None:
            ovs.append(f"seed={seed}")
        ovs.append(f"device={self._device}")
        given = [*self._overrides, *s.overrides, *overrides]
        if not any(o.split("=", 1)[0].lstrip("+~") == "durable" for o in given):
            ovs.append("durable=false")   # a case's records outlive a killed worker; no fsyncs
        ovs += given
        config = _load(tuple(ovs))
        if s.verify and not config.train.checkpoint_every:  # verify needs kept checkpoints
            config = _load((*ovs, f"train.checkpoint_every={max(1, config.train.epochs)}"))
        return config

    def _run_dir(self, seed: int | None) -> Path:
        base = self._runs_dir / self.spec.case / (f"s{seed}" if seed is not None else "unseeded")
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        return path

    def fit(self, seed: int | None = None, *, overrides: Sequence[str] = ()) -> Any:
        """One run; its record joins the case whatever happens (done, halted, crashed)."""
        import nora
        from nora.session_report import case_record

        config = self.config_for(seed, overrides)   # None: the case's first seed
        run_dir = self._run_dir(config.seed)
        error, t0 = None, time.perf_counter()
        try:
            return nora.train(config, run_dir=run_dir)
        except nora.NormViolationError:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            st = self._state
            rec = case_record(run_dir, test_id=self.spec.test_id, case=self.spec.case,
                              run=st.runs, seed=config.seed, worker=st.worker, error=error,
                              duration_sec=round(time.perf_counter() - t0, 4),
                              spec=self.spec.as_dict(), relative_to=self._runs_dir.parent)
            if self._golden is not None and rec["status"] == "done":
                self._golden(self._node, config.seed, run_dir, st)
            if self.spec.verify and rec["status"] == "done":
                self._verify(run_dir, config.seed, st)
            st.records.append(rec)
            prefix = "nora." if st.runs == 0 else f"nora.run{st.runs}."
            for key in ("seed", "outcome", "expected_outcome", "fingerprint", "decisions",
                        "detection_rate_pct", "time_to_detection_sec", "duration_sec"):
                self._node.user_properties.append((prefix + key, rec[key]))
            st.runs += 1

    def _verify(self, run_dir: Path, seed: int | None, st: CaseState) -> None:
        """``nora verify`` on a finished run: only ``verified`` passes the gate."""
        from nora.analysis.verify import verify

        v = verify(run_dir, budget=self.spec.verify, workers=1,
                   seed=zlib.crc32(self.spec.test_id.encode()))
        st.verdicts[f"verify[s{seed}]"] = {"passed": v.verdict == "verified",
                                            "detail": f"{v.verdict}: {v.report()}"}
        self._node.user_properties.append(("nora.verify.verdict", v.verdict))

    def fit_all(self, *, overrides: Sequence[str] = ()) -> list[Any]:
        """Every seed of the case; a halted run's result is returned, not raised."""
        import nora

        results = []
        for seed in (self.spec.seeds or [None]):   # None: the config's own seed
            try:
                results.append(self.fit(seed, overrides=overrides))
            except nora.NormViolationError as exc:
                results.append(exc.result)
        if len(results) > 1:
            record_seed_stats(self.spec, self._state, results)
        return results


def record_seed_stats(spec: CaseSpec, state: CaseState, results: Sequence[Any]) -> None:
    """Mean, std, IQM and a 95% bootstrap CI of the case's metric across its seeds; with
    ``max_ci_width`` a verdict the gate checks."""
    from nora.analysis import seed_stats

    metric = spec.metric or ("accuracy" if spec.trainer == "supervised" else "greedy_return")
    values = [r.metrics[metric] for r in results if r.status == "done" and metric in r.metrics]
    if len(values) < 2:
        return
    stats = seed_stats(values)
    for key in ("mean", "std", "iqm", "ci_low", "ci_high"):
        state.metrics[f"{metric}_{key}"] = getattr(stats, key)
    state.metrics[f"{metric}_ci_width"] = stats.ci_width
    if spec.max_ci_width is not None:
        ok = stats.within(spec.max_ci_width)
        state.verdicts["seed_spread"] = {
            "passed": ok, "detail": f"95% CI width of {metric} across {len(values)} seeds "
            f"{stats.ci_width:.4g} {'<=' if ok else '>'} max_ci_width {spec.max_ci_width}"}


class GoldenCheck:
    """Per run of a ``nora(golden=True)`` case: compare with, or record, its baseline."""

    def __init__(self, root: Path, update: bool) -> None:
        from nora.golden import GoldenStore

        self.store, self.update = GoldenStore(root), update

    def __call__(self, node: pytest.Item, seed: int | None, run_dir: Path,
                 state: CaseState) -> None:
        from nora.golden import platform_key
        from nora.reader import read_manifest

        env = read_manifest(run_dir)["env"]
        platform = platform_key(env["device"], env["torch_threads"])
        experiment = f"{node.path.stem}.{getattr(node, 'originalname', node.name)}"
        callspec = getattr(node, "callspec", None)
        case = f"{callspec.id if callspec else 'default'}/seed={seed}"
        if self.update:
            path = self.store.update(experiment, case, platform, run_dir)
            state.metrics.setdefault("golden", {})[case] = f"recorded in {path.name}"
            return
        verdict = self.store.check(experiment, case, platform, run_dir)
        state.metrics.setdefault("golden", {})[case] = verdict.status
        if verdict.status != "missing":   # a missing baseline is reported, not failed
            state.verdicts[f"golden[{case}]"] = {"passed": verdict.passed,
                                                 "detail": verdict.report()}


class Recorder:
    """``nora_record(name, value)`` adds a user metric to the case's rows;
    ``nora_record.verdict(name, passed, detail)`` a verdict the gate checks."""

    def __init__(self, state: CaseState, node: pytest.Item) -> None:
        self._state, self._node = state, node

    def __call__(self, name: str, value: Any) -> None:
        value = plain(value)
        self._state.metrics[str(name)] = value
        self._node.user_properties.append((f"nora.metric.{name}", value))

    def verdict(self, name: str, passed: bool, detail: str = "") -> None:
        """A verdict named again in the same case (e.g. once per seed) keeps every call: it
        passes only if each did, and its detail lists each one's."""
        old = self._state.verdicts.get(str(name))
        if old is not None:
            passed = old["passed"] and bool(passed)
            detail = "; ".join(d for d in (old["detail"], str(detail)) if d)
        self._state.verdicts[str(name)] = {"passed": bool(passed), "detail": str(detail)}
        self._node.user_properties.append((f"nora.verdict.{name}",
                                           "pass" if passed else "fail"))


class DDPGroup:
    """``ddp_group.run(fn, world_size=N)``: ``fn(rank, world_size, *args)`` on N ranks,
    through ``nora.ddp.run_group`` on this worker's own port range."""

    def __init__(self, ports: range, *, world_size: int = 2, backend: str = "auto",
                 timeout_s: float = 60.0) -> None:
        self.ports, self.world_size = ports, world_size
        self.backend, self.timeout_s = backend, timeout_s

    def run(self, fn: Callable[..., Any], world_size: int | None = None, *,
            args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
            backend: str | None = None, timeout_s: float | None = None) -> list[Any]:
        from nora.ddp import run_group

        return run_group(fn, world_size or self.world_size, backend=backend or self.backend,
                         timeout_s=timeout_s or self.timeout_s, args=args, kwargs=kwargs,
                         ports=self.ports)
