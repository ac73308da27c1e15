"""The verdict of ``nora verify`` and what it says it audited, as text and as JSON."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Verification", "detection_guarantee"]

VERDICTS = ("verified", "failed", "unverifiable")


def detection_guarantee(p: float, n: int) -> float:
    """Probability that ``n`` segments drawn at random catch nondeterminism that shows in at
    least a fraction ``p`` of all segments: ``1 - (1 - p)^n`` (a lower bound; draws are
    without replacement)."""
    return 1.0 - (1.0 - p) ** n


@dataclass
class Verification:
    """``verdict`` is ``verified``, ``failed`` (see ``findings``) or ``unverifiable`` (this
    machine cannot replay the run bit for bit; ``reasons`` says why)."""

    run_dir: Path
    verdict: str
    checks: list[dict[str, Any]]
    findings: list[dict[str, Any]]
    reasons: list[str]
    notes: list[str]
    segments: list[dict[str, Any]]
    total_segments: int
    random_segments: int
    audited_steps: int
    total_steps: int
    budget: float
    seed: int
    workers: int
    seconds: float
    replay_seconds: float
    training_seconds: float | None
    audit_seconds: float = 0.0
    first_divergent_step: int | None = None
    divergent_tensors: list[str] = field(default_factory=list)

    @property
    def cost_ratio(self) -> float | None:
        """Verification wall time over the recorded training wall time."""
        if not self.training_seconds:
            return None
        return self.seconds / self.training_seconds

    @property
    def passed(self) -> bool:
        return self.verdict == "verified"

    def guarantee(self, p: float) -> float:
        return detection_guarantee(p, self.random_segments)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        d["cost_ratio"] = self.cost_ratio
        d["guarantee"] = {str(p): round(self.guarantee(p), 4) for p in (0.1, 0.25, 0.5)}
        return d

    def report(self) -> str:
        """A report a person reads: verdict, each check, the sample, cost and guarantee."""
        head = {"verified": "VERIFIED", "failed": "FAILED",
                "unverifiable": "UNVERIFIABLE here"}[self.verdict]
        lines = [f"nora verify {self.run_dir}: {head}"]
        for r in self.reasons:
            lines.append(f"  unverifiable: {r}")
        for c in self.checks:
            mark = "ok  " if c["passed"] else "FAIL"
            lines.append(f"  [{mark}] {c['check']}: {c['detail']}")
        for f in self.findings:
            where = ", ".join(x for x in (f.get("file"), None if f.get("step") is None
                                          else f"step {f['step']}") if x)
            lines.append(f"  - {f['check']}{f' ({where})' if where else ''}: {f['message']}")
            if f.get("tensors"):
                lines.append(f"      tensors: {', '.join(f['tensors'][:8])}"
                             + (" ..." if len(f["tensors"]) > 8 else ""))
        for n in self.notes:
            lines.append(f"  note: {n}")
        pct = 100.0 * self.audited_steps / self.total_steps if self.total_steps else 0.0
        lines.append(f"  replayed {len(self.segments)} of {self.total_segments} segment(s), "
                     f"{self.audited_steps} of {self.total_steps} steps ({pct:.1f}%, budget "
                     f"{100 * self.budget:g}%, seed {self.seed}, {self.workers} worker(s))")
        shown = self.segments if len(self.segments) <= 8 else \
            [s for s in self.segments if s["status"] != "reproduced"]
        for s in shown:
            lines.append(f"    steps {s['start']}-{s['end'] - 1}: {s['status']} "
                         f"({s['seconds']:.1f} s)")
        if len(shown) < len(self.segments):
            lines.append(f"    {len(self.segments) - len(shown)} other segment(s) reproduced")
        ratio = self.cost_ratio
        lines.append(f"  cost: {self.seconds:.1f} s to verify (static audit "
                     f"{self.audit_seconds:.1f} s, segment replays {self.replay_seconds:.1f}"
                     f" s in all) vs {self.training_seconds or float('nan'):.1f} s of training: "
                     f"ratio {'n/a' if ratio is None else f'{ratio:.3f}'}")
        if self.segments:
            n = self.random_segments
            lines.append(f"  guarantee: nondeterminism showing in at least p of the segments "
                         f"is caught with probability >= 1-(1-p)^{n} over the {n} random "
                         f"pick(s): p=0.5 -> {self.guarantee(0.5):.3f}, p=0.1 -> "
                         f"{self.guarantee(0.1):.3f}"
                         + (" (plus the first and last segment)"
                            if len(self.segments) > n else ""))
        if self.first_divergent_step is not None:
            lines.append(f"  first disputed step: {self.first_divergent_step}"
                         + (f" (tensors: {', '.join(self.divergent_tensors[:8])})"
                            if self.divergent_tensors else ""))
        return "\n".join(lines)
