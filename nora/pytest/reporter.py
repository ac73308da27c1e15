"""The controller side: collect every case's records from the test reports (local ones, or
xdist workers' as they arrive, so a crashed worker's finished cases are kept; the case it
was running gets ``crashed`` rows), write the session report once at the end, print the
compact table, and apply the gate."""
from __future__ import annotations

import time
from typing import Any

import pytest

from nora.pytest.crash import CASE_ATTR
from nora.pytest.options import NoraOptions
from nora.pytest.workers import WorkerInfo

REPORT_ATTR = "nora_records"   # the TestReport attribute that carries a case's records


class NoraReporter:
    """Registered in ``pytest_configure`` on the controller (or the only process) only."""

    def __init__(self, config: pytest.Config, options: NoraOptions, info: WorkerInfo) -> None:
        self.config, self.options, self.info = config, options, info
        self.records: dict[tuple[str, int], dict[str, Any]] = {}
        self.started: dict[str, dict[str, Any]] = {}   # test id -> case info (setup report)
        self.duplicates = 0
        self.report: Any = None
        self.error: str | None = None
        self.write_sec = 0.0

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        o = self.options
        seeds = (",".join(map(str, o.seeds)) if o.seeds
                 else "per test, config seed + crc32(node id) (marker seeds win)")
        line = f"nora: seeds={seeds}; device={o.device}; report dir={self.info.session_dir}"
        if o.gate:
            line += "; gate on"
        if o.update_golden:
            line += "; updating golden files"
        return [line]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        info = getattr(report, CASE_ATTR, None)
        if info:
            self.started[report.nodeid] = info
        self._add(getattr(report, REPORT_ATTR, None) or ())

    def _add(self, records: Any) -> None:
        for rec in records:
            key = (rec["test_id"], int(rec.get("run") or 0))
            if key in self.records:
                self.duplicates += 1
            self.records[key] = rec

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport,
                               sched: Any) -> None:
        """xdist lost the worker running ``crashitem``: give the case its rows (recovered
        finished runs, a ``crashed`` one for the run in progress) and mark its manifest."""
        from nora.pytest.crash import crash_text, crashed_records

        node = getattr(report, "node", None)
        worker = str(getattr(getattr(node, "gateway", None), "id", "") or "?")
        reason = f"worker {worker!r} crashed while running the case"
        recs = crashed_records(crashitem, worker, self.info.session_dir, reason,
                               self.started.get(crashitem))
        self._add(recs)
        if recs:
            report.sections.append(("NORA case", crash_text(recs, self.info.session_dir)))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.records:
            return
        from nora.session_report import write_session_report

        t0 = time.perf_counter()
        meta = {"workers": sorted({r.get("worker") or "main" for r in self.records.values()}),
                "options": {"modes": self.options.modes, "regimes": self.options.regimes,
                            "violations": self.options.violations,
                            "seeds": self.options.seeds, "device": self.options.device},
                "duplicate_records_dropped": self.duplicates}
        try:
            self.report = write_session_report(self.info.session_dir,
                                               list(self.records.values()),
                                               gate=self.options.gate, meta=meta)
        except Exception as exc:  # noqa: BLE001 - report it, do not hide the test results
            self.error = f"{type(exc).__name__}: {exc}"
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
            return
        self.write_sec = time.perf_counter() - t0
        if self.options.gate and self.report.failures and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tr = terminalreporter
        if self.error:
            tr.write_sep("=", "NORA report", red=True)
            tr.write_line(f"could not write the session report: {self.error}", red=True)
            return
        if self.report is None:
            return
        from nora.session_report import terminal_text

        tr.write_sep("=", "NORA report")
        records = list(self.records.values())
        tr.write_line(terminal_text(self.report, records))
        missing = sorted({f"{r['test_id']} [{case}]" for r in records
                          for case, status in (r.get("metrics") or {}).get("golden", {}).items()
                          if status == "missing"})
        if missing:
            tr.write_line(f"golden: {len(missing)} baseline(s) missing for this platform "
                          f"(record them with --nora-update-golden):", yellow=True)
            for name in missing[:10]:
                tr.write_line(f"  {name}")
        failures = self.report.failures
        if not failures:
            if self.options.gate:
                tr.write_line("NORA gate: passed", green=True, bold=True)
            return
        head = (f"NORA gate: FAILED on {len(failures)} problem(s)" if self.options.gate
                else f"NORA gate (off, --nora-gate to enforce) would fail on "
                     f"{len(failures)} problem(s)")
        tr.write_line(head, red=self.options.gate, yellow=not self.options.gate, bold=True)
        for f in failures[:30]:
            tr.write_line(f"  {f['test_id']} (seed {f['seed']}): {f['reason']}")
        if len(failures) > 30:
            tr.write_line(f"  ... and {len(failures) - 30} more in "
                          f"{self.report.paths['report.md']}")
