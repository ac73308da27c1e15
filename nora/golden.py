"""Golden baselines: per experiment, the fingerprints, per-tensor hashes and key metrics of
its runs, keyed by platform (torch version, device type, thread count), so a later session
can say whether it still produces the same bits, and name the tensors that moved.

Files live in ``golden/<experiment>.json`` in the user's repository. A missing entry for
the current platform is reported, never silently created: only an explicit update writes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nora.reader import read_manifest, read_tensor_hashes
from nora.records import read_json, write_json

ENV_KEYS = ("torch_threads", "versions", "device", "platform", "python")


def platform_key(device: str, threads: int | None = None) -> str:
    """Where bits are comparable: same torch build, device type and thread count."""
    dev = torch.device(device).type if device != "auto" else "cpu"
    n = threads if threads is not None else torch.get_num_threads()
    return f"torch-{torch.__version__}|{dev}|threads-{n}"


def entry_from_run(run_dir: str | Path) -> dict[str, Any]:
    """What a golden file keeps about one run: fingerprint, tensor hashes, metrics, env."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    tensors = run_dir / "state" / "tensors.json"
    metrics = {k: v for k, v in (manifest.get("metrics") or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    env = manifest.get("env", {})
    return {"fingerprint": manifest.get("fingerprint"),
            "tensors": read_tensor_hashes(tensors)["hashes"] if tensors.exists() else {},
            "metrics": metrics, "env": {k: env.get(k) for k in ENV_KEYS}}


@dataclass
class GoldenVerdict:
    status: str  # "match", "mismatch" or "missing"
    experiment: str
    case: str
    platform: str
    path: Path
    divergent_tensors: list[str] = field(default_factory=list)
    env_diff: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "match"

    def report(self) -> str:
        if self.status == "missing":
            return (f"golden: no baseline for {self.case!r} on {self.platform} in {self.path}; "
                    "run with --nora-update-golden to record one")
        if self.status == "match":
            return f"golden: {self.case!r} matches its baseline on {self.platform}"
        lines = [f"golden: {self.case!r} differs from its baseline on {self.platform} "
                 f"({self.path})"]
        if self.divergent_tensors:
            shown = ", ".join(self.divergent_tensors[:8])
            more = len(self.divergent_tensors) - 8
            lines.append(f"  tensors that differ: {shown}" + (f" (+{more} more)" if more > 0
                                                              else ""))
        for key, (old, new) in self.env_diff.items():
            lines.append(f"  manifest env.{key}: {old!r} (golden) != {new!r} (now)")
        lines.append("Hint: if the change is intended, re-record with --nora-update-golden; "
                     "otherwise `python -m nora compare` the two runs to find the first "
                     "divergent step.")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"check": "golden", "passed": self.passed, "status": self.status,
                "platform": self.platform, "path": str(self.path),
                "divergent_tensors": self.divergent_tensors,
                "env_diff": {k: list(v) for k, v in self.env_diff.items()},
                "message": self.report()}


class GoldenStore:
    """One folder of ``<experiment>.json`` files."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, experiment: str) -> Path:
        return self.root / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', experiment)}.json"

    def _load(self, experiment: str) -> dict[str, Any]:
        p = self.path(experiment)
        return read_json(p) if p.exists() else {"experiment": experiment, "platforms": {}}

    def update(self, experiment: str, case: str, platform: str, run_dir: str | Path) -> Path:
        data = self._load(experiment)
        data["platforms"].setdefault(platform, {})[case] = entry_from_run(run_dir)
        write_json(self.path(experiment), data)
        return self.path(experiment)

    def check(self, experiment: str, case: str, platform: str,
              run_dir: str | Path) -> GoldenVerdict:
        path = self.path(experiment)
        golden = self._load(experiment)["platforms"].get(platform, {}).get(case)
        if golden is None:
            return GoldenVerdict("missing", experiment, case, platform, path)
        now = entry_from_run(run_dir)
        if now["fingerprint"] == golden["fingerprint"]:
            return GoldenVerdict("match", experiment, case, platform, path)
        names = sorted(set(golden["tensors"]) | set(now["tensors"]))
        order = list(golden["tensors"]) + [n for n in names if n not in golden["tensors"]]
        divergent = [n for n in order if golden["tensors"].get(n) != now["tensors"].get(n)]
        env_diff = {k: (golden["env"].get(k), now["env"].get(k)) for k in ENV_KEYS
                    if golden["env"].get(k) != now["env"].get(k)}
        return GoldenVerdict("mismatch", experiment, case, platform, path, divergent, env_diff)
