"""NORA's pytest plugin (``pytest11`` entry point ``nora``): options, markers, fixtures and
hooks, thin over ``nora.pytest.*`` and the core library. Heavy imports happen inside the
fixtures, so ``pytest --help`` and sessions without NORA cases stay fast.

A test that takes ``mode``, ``regime`` or ``violation`` is parametrized over the values
chosen on the command line (ids like ``norm_aware-strict-missing_seed``), and every NORA case
carries markers named after its mode, regime and violation (``-m "strict and missing_seed"``).
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from nora.pytest.case import CaseSpec, CaseState, DDPGroup, GoldenCheck, Recorder, SeededTrainer
from nora.pytest.case import marker_values
from nora.pytest.crash import CASE_ATTR, case_info
from nora.pytest.options import AXES, NoraOptions, add_options
from nora.pytest.seeds import seed_base
from nora.pytest.reporter import REPORT_ATTR, NoraReporter
from nora.pytest.workers import WorkerInfo, XdistHooks, worker_device

if TYPE_CHECKING:
    import torch

OPTIONS_KEY = pytest.StashKey[NoraOptions]()
WORKER_KEY = pytest.StashKey[WorkerInfo]()
SPEC_KEY = pytest.StashKey["CaseSpec | str"]()   # the spec, or why the nora marker is bad
STATE_KEY = pytest.StashKey[CaseState]()
CASE_FIXTURES = frozenset({"nora_config", "seeded_trainer", "nora_record", "nora_case",
                           *AXES})
_MARKERS = [
    "nora(trainer=, mode=, regime=, violation=, seeds=[...], overrides=[...]): what a NORA "
    "case trains; values fixed here win over the command line",
    "gpu: needs a CUDA GPU (skipped where there is none)",
    "ddp(world_size=N, backend='auto', timeout_s=60): runs a torch.distributed group",
    "slow: long experiment (deselected by default; run with -m slow)",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    from nora.config.compose import group_choices
    from nora.exiting import skip_exit_collection

    skip_exit_collection()
    for line in _MARKERS:
        config.addinivalue_line("markers", line)
    for group, what in (("modes", "mode"), ("regime", "regime"), ("violation", "violation")):
        for name in group_choices(group):
            config.addinivalue_line("markers", f"{name}: NORA case with {what} {name}")
    options = NoraOptions.from_config(config)
    info = WorkerInfo.from_config(config, options.report_root)
    config.stash[OPTIONS_KEY], config.stash[WORKER_KEY] = options, info
    if not hasattr(config, "workerinput"):   # reporters live on the controller only
        config.pluginmanager.register(NoraReporter(config, options, info), "nora-reporter")
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(
                XdistHooks(info, lambda: seed_base(config, options.overrides)), "nora-xdist")
        if config.getoption("nora_mlflow"):
            from nora.pytest.tracking import MlflowSessionLogger
            config.pluginmanager.register(MlflowSessionLogger(config, info.session_dir),
                                          "nora-mlflow")


def _parametrized_elsewhere(metafunc: pytest.Metafunc, name: str) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        names = names.split(",") if isinstance(names, str) else names
        if name in [n.strip() for n in names]:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    axes = [a for a in AXES if a in metafunc.fixturenames
            and not _parametrized_elsewhere(metafunc, a)]
    if not axes:
        return
    options = metafunc.config.stash[OPTIONS_KEY]
    marker = metafunc.definition.get_closest_marker("nora")
    values = [marker_values(marker, a) or list(options.choices(a)) for a in axes]
    combos = list(itertools.product(*values))
    ids = ["-".join(c) for c in combos]
    if len(axes) == 1:
        metafunc.parametrize(axes[0], [c[0] for c in combos], ids=ids)
    else:
        metafunc.parametrize(axes, combos, ids=ids)


def pytest_itemcollected(item: pytest.Item) -> None:
    """Work out each NORA case once, and mark it with its mode, regime and violation."""
    names = set(getattr(item, "fixturenames", ()))
    if not (names & CASE_FIXTURES or item.get_closest_marker("nora")):
        return
    try:
        spec = CaseSpec.from_item(item, item.config.stash[OPTIONS_KEY])
    except ValueError as exc:
        item.stash[SPEC_KEY] = str(exc)
        return
    item.stash[SPEC_KEY] = spec
    for value in (spec.mode, spec.regime, spec.violation):
        if not any(m.name == value for m in item.iter_markers()):
            item.add_marker(value)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [i for i in items if i.get_closest_marker("gpu")]
    if gpu_items:
        import torch

        if not torch.cuda.is_available():
            skip = pytest.mark.skip(reason="needs a CUDA GPU; torch.cuda.is_available() is "
                                           "False here")
            for item in gpu_items:
                item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Hand the case's records to whoever collects reports: the local reporter, or (under
    xdist) the controller, in the serialized teardown report, as plain dicts."""
    report = yield
    state = item.stash.get(STATE_KEY, None)
    if state is not None:
        if report.when == "setup":   # the controller learns a case began (for a crash)
            setattr(report, CASE_ATTR, case_info(state.spec, state.worker,
                                                 list(state.spec.seeds or [])))
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            state.test_outcome = report.outcome
            if report.failed:
                report.sections.append(("NORA case", _case_text(item, state)))
        elif report.when == "teardown":
            setattr(report, REPORT_ATTR, state.flush())
    return report


def _case_text(item: pytest.Item, state: CaseState) -> str:
    """What to rerun a failed case with: its settings, seeds, and each run's directory."""
    s = state.spec
    lines = [f"trainer={s.trainer} mode={s.mode} regime={s.regime} violation={s.violation} "
             f"seeds={list(s.seeds) if s.seeds else 'config default'} "
             f"overrides={list(s.overrides)}"]
    if s.per_test_seed and s.seeds:
        from nora.pytest.seeds import seed_text

        lines.append(seed_text(s.test_id, s.seeds[0]))
    root = item.config.stash[WORKER_KEY].session_dir
    for rec in state.records:
        lines.append(f"run {rec['run']} seed {rec['seed']}: {rec['outcome']} (expected "
                     f"{rec['expected_outcome']}) in {root / str(rec['run_dir'])}")
    return "\n".join(lines)


# --- fixtures ------------------------------------------------------------------------
def _state(request: pytest.FixtureRequest) -> CaseState:
    node = request.node
    spec = node.stash.get(SPEC_KEY, None)
    if isinstance(spec, str):
        pytest.fail(spec, pytrace=False)
    if spec is None:   # a fixture reached through another path than collection
        spec = CaseSpec.from_item(node, request.config.stash[OPTIONS_KEY])
        node.stash[SPEC_KEY] = spec
    if STATE_KEY not in node.stash:
        node.stash[STATE_KEY] = CaseState(spec, request.config.stash[WORKER_KEY].worker_id)
    return node.stash[STATE_KEY]


@pytest.fixture
def nora_case(request: pytest.FixtureRequest) -> CaseSpec:
    """This case's spec: test id, trainer, mode, regime, violation, seeds, overrides."""
    return _state(request).spec


@pytest.fixture
def nora_overrides(pytestconfig: pytest.Config) -> list[str]:
    """Config overrides for every case (ini ``nora_overrides``); override it in a conftest."""
    return list(pytestconfig.stash[OPTIONS_KEY].overrides)


@pytest.fixture
def mode(request: pytest.FixtureRequest) -> str:
    """The case's mode (tests taking it are parametrized over ``--nora-modes``)."""
    return _state(request).spec.mode


@pytest.fixture
def regime(request: pytest.FixtureRequest) -> str:
    """The case's regime (tests taking it are parametrized over ``--nora-regimes``)."""
    return _state(request).spec.regime


@pytest.fixture
def violation(request: pytest.FixtureRequest) -> str:
    """The case's violation (tests taking it are parametrized over ``--nora-violations``)."""
    return _state(request).spec.violation


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> torch.device:
    """This worker's device: ``cuda:<worker index mod GPUs>``, or CPU where there is none."""
    import torch

    info, options = pytestconfig.stash[WORKER_KEY], pytestconfig.stash[OPTIONS_KEY]
    return torch.device(worker_device(options.device, info.index))


@pytest.fixture(scope="session")
def gpu_device(pytestconfig: pytest.Config) -> torch.device:
    """This worker's GPU; skips the test where there is none."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU; torch.cuda.is_available() is False here")
    return torch.device(worker_device("auto", pytestconfig.stash[WORKER_KEY].index))


@pytest.fixture
def seeded_trainer(request: pytest.FixtureRequest, nora_overrides: list[str],
                   device: torch.device) -> SeededTrainer:
    """The case's trainer: ``.fit() -> RunResult``, ``.fit_all()``, ``.seeds``, ``.config``."""
    import importlib.util

    from nora.errors import ConfigError
    from nora.violations import inapplicable

    state = _state(request)
    spec = state.spec
    if spec.trainer == "ppo" and importlib.util.find_spec("nora.trainers.ppo") is None:
        pytest.skip("trainer 'ppo' is not available here (nora.trainers.ppo is missing)")
    if spec.violation in inapplicable(spec.trainer):
        pytest.skip(f"violation {spec.violation!r} does not apply to trainer {spec.trainer!r}")
    info = request.config.stash[WORKER_KEY]
    try:
        options = request.config.stash[OPTIONS_KEY]
        golden = GoldenCheck(options.golden_dir, options.update_golden) if spec.golden else None
        return SeededTrainer(spec, state, runs_dir=info.session_dir / "runs",
                             device=str(device), overrides=nora_overrides, node=request.node,
                             golden=golden)
    except ConfigError as exc:
        pytest.fail(f"{spec.test_id}: invalid NORA case config: {exc}", pytrace=False)


@pytest.fixture
def nora_config(seeded_trainer: SeededTrainer) -> Any:
    """The case's validated ``RunConfig`` (its first seed)."""
    return seeded_trainer.config


@pytest.fixture
def nora_record(request: pytest.FixtureRequest) -> Recorder:
    """``nora_record(name, value)``: a user metric in the case's report rows (and junitxml);
    ``nora_record.verdict(name, passed, detail)``: a verdict the gate checks."""
    return Recorder(_state(request), request.node)


@pytest.fixture
def ddp_group(request: pytest.FixtureRequest) -> DDPGroup:
    """``ddp_group.run(fn, world_size=N) -> list``: one value per rank, on this worker's own
    port range (``ddp(world_size=N, backend=, timeout_s=)`` marker sets the defaults)."""
    marker = request.node.get_closest_marker("ddp")
    kw = dict(marker.kwargs) if marker else {}
    if marker and marker.args:
        kw.setdefault("world_size", marker.args[0])
    return DDPGroup(request.config.stash[WORKER_KEY].ports,
                    world_size=int(kw.get("world_size", 2)),
                    backend=str(kw.get("backend", "auto")),
                    timeout_s=float(kw.get("timeout_s", 60.0)))
