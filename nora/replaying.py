"""Re-execute a run from its manifest alone, and say whether it reproduces.

A replay starts from the seam settings the run started with and applies every tracked config
change at its step, with no agent: what the record does not say cannot be replayed, so
an untracked change (or a seed nobody recorded) shows up as a failed verdict.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nora.config.compose import compose_dict, validate
from nora.errors import ConfigError
from nora.records import read_json, write_json
from nora.launcher import train
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


def load_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise ConfigError(f"run directory {str(run_dir)!r} has no manifest.json; expected a "
                          "directory written by `nora train` (runs/<timestamp>/)")
    return read_json(path)


def replay(run_dir: str | Path, *, out_dir: str | Path | None = None,
           progress: bool = False) -> ReplayVerdict:
    """Replay ``run_dir`` and record the verdict in its reproducibility metrics."""
    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    data = dict(manifest["config"])
    data["mode"] = compose_dict(["modes=pipeline"])["mode"]
    data["violation"] = {**data["violation"], "name": "none"}
    data["replay_changes"] = manifest.get("config_changes", [])
    config = validate(data)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    out = Path(out_dir) if out_dir else run_dir / "replays" / stamp
    result: RunResult = train(config, run_dir=out, progress=progress,
                              start_settings=manifest["seams_at_start"])
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
        metrics = read_json(metrics_path)
        metrics.setdefault("verdicts", {})["replay"] = verdict.to_dict()
        write_json(metrics_path, metrics)
    return verdict
