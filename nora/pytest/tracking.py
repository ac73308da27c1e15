"""``--nora-mlflow``: after the session report is written, log every case's run to MLflow,
tagged with its test, seed, test outcome, verdicts and the gate's reason when it failed.

Runs on the controller only (one writer for the tracking store, also under xdist); the
store is ``$MLFLOW_TRACKING_URI`` (default ``sqlite:///mlflow.db``), the experiment
``$MLFLOW_EXPERIMENT_NAME`` (default ``nora``).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


class MlflowSessionLogger:
    """Registered in ``pytest_configure`` when ``--nora-mlflow`` is given."""

    def __init__(self, config: pytest.Config, session_dir: Path) -> None:
        self.config, self.session_dir = config, session_dir
        self.logged: list[str] = []
        self.errors: list[str] = []
        self.experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "nora"

    def _tags(self, rec: dict[str, Any], failures: dict[tuple[str, Any], str]) -> dict[str, Any]:
        tags = {"nora.test_id": rec["test_id"], "nora.case": rec.get("case", ""),
                "nora.seed": rec.get("seed"), "nora.test_outcome": rec.get("test_outcome"),
                "nora.session": str(self.session_dir),
                "mlflow.runName": f"{rec['test_id']} s{rec.get('seed')}"[-250:]}
        for name, verdict in (rec.get("verdicts") or {}).items():
            tags[f"nora.verdict.{name}"] = "passed" if verdict.get("passed") else "failed"
        reason = failures.get((rec["test_id"], rec.get("seed")))
        tags["nora.gate"] = f"failed: {reason}"[:5000] if reason else "passed"
        return tags

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Iterator[None]:
        result = yield                       # the session report is written by now
        reporter = self.config.pluginmanager.get_plugin("nora-reporter")
        records = list(getattr(reporter, "records", {}).values())
        report = getattr(reporter, "report", None)
        failures = {(f["test_id"], f.get("seed")): f["reason"]
                    for f in (report.failures if report is not None else [])}
        from nora.tracking import TrackingConfig, TrackingError, log_run

        tracking = TrackingConfig(name="mlflow", experiment=self.experiment)
        for rec in records:
            if not rec.get("run_dir"):
                continue
            run_dir = Path(rec["run_dir"])
            run_dir = run_dir if run_dir.is_absolute() else self.session_dir / run_dir
            try:
                self.logged.append(str(log_run(run_dir, tracking,
                                               extra_tags=self._tags(rec, failures))))
            except (TrackingError, OSError) as exc:
                self.errors.append(f"{rec['test_id']}: {exc}")
        if self.errors and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return result

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from nora.tracking.mlflow_log import resolve_uri

        tr = terminalreporter
        tr.write_line(f"NORA mlflow: logged {len(self.logged)} run(s) to {resolve_uri(None)} "
                      f"(experiment {self.experiment!r})")
        for err in self.errors[:10]:
            tr.write_line(f"  could not log {err}", red=True)
