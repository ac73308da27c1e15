"""Find run directories under any mix of paths and read them into tables."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from nora.errors import ConfigError
from nora.reader import read_decisions, read_manifest, read_repro_metrics, read_steps


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Every run directory (one holding a manifest.json) at or below the given paths."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ConfigError(f"report path {str(raw)!r} does not exist; give run directories "
                              "(runs/<timestamp>) or pytest session reports (reports/<session>)")
        if (path / "manifest.json").is_file():
            found.append(path)
        else:
            found.extend(sorted(p.parent for p in path.rglob("manifest.json")))
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise ConfigError(f"no run directories (with a manifest.json) under "
                          f"{', '.join(map(str, paths))}")
    return unique


def _name(cfg: dict[str, Any], key: str) -> Any:
    value = cfg.get(key)
    return value.get("name") if isinstance(value, dict) else value


def run_row(run: Path, root: Path | None = None) -> dict[str, Any]:
    manifest = read_manifest(run)
    cfg = manifest["config"]
    repro = read_repro_metrics(run)
    metrics = manifest.get("metrics") or {}
    verdicts = repro.get("verdicts") or {}
    label = str(run.relative_to(root)) if root and run.is_relative_to(root) else str(run)
    return {
        "run": label,
        "path": str(run),
        "trainer": _name(cfg, "trainer"),
        "mode": _name(cfg, "mode"),
        "regime": _name(cfg, "regime"),
        "violation": _name(cfg, "violation"),
        "seed": cfg.get("seed"),
        "status": manifest.get("status"),
        "outcome": repro.get("outcome", manifest.get("outcome")),
        "expected": repro.get("expected_outcome"),
        "detection_rate_pct": repro.get("detection_rate_pct"),
        "time_to_detection_sec": repro.get("avg_time_to_detection_sec"),
        "false_positives": repro.get("false_positives"),
        "fingerprint": manifest.get("fingerprint"),
        "metric": metrics.get("accuracy", metrics.get("mean_return")),
        "verdicts": {k: bool(v.get("passed")) for k, v in verdicts.items()
                     if isinstance(v, dict)},
        "duration_sec": manifest.get("duration_sec"),
    }


def runs_table(runs: list[Path]) -> pd.DataFrame:
    root = Path(*_common_parts(runs)) if len(runs) > 1 else runs[0].parent
    return pd.DataFrame([run_row(r, root) for r in runs])


def _common_parts(paths: list[Path]) -> tuple[str, ...]:
    parts = [p.parts for p in paths]
    common = []
    for group in zip(*parts):
        if len(set(group)) != 1:
            break
        common.append(group[0])
    return tuple(common) or ("/",)


def step_curves(run: Path) -> pd.DataFrame:
    rows = list((read_steps(run / "metrics.jsonl") or {}).values())
    return pd.DataFrame(rows, columns=["step", "loss"]) if rows else pd.DataFrame(
        columns=["step", "loss"])


def decisions(run: Path) -> list[dict[str, Any]]:
    return read_decisions(run)
