"""Re-execute a run from its manifest alone, and say whether it reproduces.

A replay starts from the seam settings the run started with and applies every tracked config
change at its step, with no agent: what the record does not say cannot be replayed, so
an untracked change (or a seed nobody recorded) shows up as a failed verdict.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nora.config.compose import compose_dict, validate
from nora.errors import ConfigError, RecordError
from nora.launcher import train
from nora.reader import read_manifest, read_repro_metrics
from nora.records import write_json
from nora.runner import RunResult


@dataclass(frozen=True)
class ReplayVerdict:
    original: Path
    replay_dir: Path
    original_fingerprint: str | None
    replay_fingerprint: str | None
    reproducible: bool
    first_divergent_step: int | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"check": "replay", "passed": self.reproducible,
                "replay_dir": str(self.replay_dir),
                "original_fingerprint": self.original_fingerprint,
                "replay_fingerprint": self.replay_fingerprint,
                "first_divergent_step": self.first_divergent_step, "message": self.message}


# Largest sizes a replay runs without --force: a manifest is input, and one claiming
# train.epochs=10**12 would otherwise start a run that never ends. Far above every preset.
LIMITS = {"train.epochs": 10_000, "train.batch_size": 1_000_000, "train.max_steps": 10_000_000,
          "trainer.channels": 4096, "trainer.hidden": 65_536, "trainer.num_envs": 1024,
          "trainer.num_steps": 100_000, "trainer.update_epochs": 1000,
          "trainer.eval_episodes": 100_000, "ddp.world_size": 1024,
          "repro.torch_threads": 1024}
# The recorded start settings a replay applies: their manifest key, each setting's JSON
# type ("?" allows null; "strs" a list of strings) and the ones a replay cannot do without.
START_KEY = "seams_at_start"
START_TYPES = {"seed": "int", "seed_source": "str", "deterministic": "bool",
               "cudnn_benchmark": "bool", "loader.workers": "int", "loader.in_order": "bool",
               "precision.amp": "bool", "precision.scaler": "bool",
               "precision.static_loss_scale": "num?", "evaluation.eval_mode": "bool",
               "evaluation.transform": "str?", "checkpoint.drop": "strs"}
START_REQUIRED = ("seed", "seed_source", "deterministic", "cudnn_benchmark")


@functools.lru_cache(maxsize=1)
def _pipeline_mode() -> dict[str, Any]:
    return compose_dict(["modes=pipeline"])["mode"]


def load_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The run's manifest, checked by ``nora.reader`` (``RecordError`` naming the problem)."""
    return read_manifest(run_dir)


def _fits(value: Any, kind: str) -> bool:
    if kind.endswith("?") and value is None:
        return True
    kind = kind.rstrip("?")
    if kind in ("bool", "str"):
        return isinstance(value, bool if kind == "bool" else str)
    if kind == "strs":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    ok = (int,) if kind == "int" else (int, float)
    return isinstance(value, ok) and not isinstance(value, bool)


def _start_settings(manifest: dict[str, Any], where: str) -> dict[str, Any]:
    """The recorded start settings, checked against ``START_TYPES``."""
    values = manifest.get(START_KEY)
    if not isinstance(values, dict):
        raise RecordError(f"{where}: {START_KEY!r} is missing or not an object; a replay "
                          "starts from the settings the run started with")
    unknown = sorted(set(values) - set(START_TYPES))
    if unknown:
        raise RecordError(f"{where}: {START_KEY} has unknown key(s) {', '.join(unknown)}; "
                          f"valid keys: {', '.join(START_TYPES)}")
    required = list(START_REQUIRED)
    missing = [k for k in required if k not in values]
    if missing:
        raise RecordError(f"{where}: {START_KEY} lacks {', '.join(missing)}")
    for key, value in values.items():
        if not _fits(value, START_TYPES[key]):
            raise RecordError(f"{where}: {START_KEY}.{key} is {value!r}; expected "
                              f"{START_TYPES[key]}")
    return values


def _check_limits(config: Any, where: str) -> None:
    for key, limit in LIMITS.items():
        node: Any = config
        for part in key.split("."):
            node = getattr(node, part, None)
        if isinstance(node, int) and node > limit:
            raise RecordError(f"{where}: {key}={node} exceeds the replay limit {limit}; a "
                              "manifest is input, so check it, then replay with --force "
                              "(replay(..., force=True)) to run it anyway")


def replay(run_dir: str | Path, *, out_dir: str | Path | None = None,
           progress: bool = False, force: bool = False) -> ReplayVerdict:
    """Replay ``run_dir`` and record the verdict in its reproducibility metrics.

    Raises:
        RecordError: the manifest is unreadable or malformed, or (without ``force``) asks
            for sizes beyond ``LIMITS``.
    """
    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    where = repr(str(run_dir / "manifest.json"))
    start = _start_settings(manifest, where)
    data = dict(manifest["config"])
    data["mode"] = _pipeline_mode()
    data["violation"] = {**(data.get("violation") or {}), "name": "none"}
    data["replay_changes"] = manifest.get("config_changes", [])
    try:
        config = validate(data)
    except ConfigError as exc:
        raise RecordError(f"{where}: the recorded config is not valid: {exc}") from None
    if not force:
        _check_limits(config, where)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    out = Path(out_dir) if out_dir else run_dir / "replays" / stamp
    result: RunResult = train(config, run_dir=out, progress=progress,
                              start_settings=start)
    from nora.analysis import compare

    original = manifest.get("fingerprint")
    same = original is not None and original == result.fingerprint
    step = None
    if original is None:
        msg = f"original run ended {manifest.get('status')!r} without a fingerprint"
    elif same:
        msg = f"replay reproduces the run: fingerprint {original}"
    else:
        comparison = compare(run_dir, out, labels=("original", "replay"))
        step = comparison.first_divergent_step
        msg = (f"replay does NOT reproduce the run: fingerprint {result.fingerprint} != "
               f"{original}\n{comparison.report()}")
    verdict = ReplayVerdict(run_dir, out, original, result.fingerprint, same, step, msg)
    metrics_path = run_dir / "norms" / "reproducibility_metrics.json"
    if metrics_path.exists():
        metrics = read_repro_metrics(run_dir)
        metrics.setdefault("verdicts", {})["replay"] = verdict.to_dict()
        write_json(metrics_path, metrics)
    return verdict
