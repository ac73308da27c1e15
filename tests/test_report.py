"""``python -m nora report``: what a person reads must be complete, readable and say when
something is cut."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from nora.cli import main
from nora.reporting import build_report, collect
from nora.reporting.figures import curves_figure, timeline_figure
from nora.session_report import case_record, write_session_report

SMALL = ["train.epochs=1", "trainer.train_subset=256"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three clean seeds and two amp_nan runs (halted, fixed) as plain run directories, and
    a gated session whose test recorded a failing verdict."""
    import nora

    root = tmp_path_factory.mktemp("runs")
    for seed in (1, 2, 3):
        nora.train(nora.load_config([*SMALL, f"seed={seed}"]), run_dir=root / f"clean{seed}")
    for regime in ("strict", "balanced"):
        try:
            nora.train(nora.load_config([*SMALL, f"regime={regime}", "violation=amp_nan"]),
                       run_dir=root / regime)
        except nora.NormViolationError:
            pass
    session = tmp_path_factory.mktemp("reports") / "sess-1"
    records = []
    for i, seed in enumerate((1, 2)):
        run_dir = session / "runs" / "test_acc" / f"s{seed}"
        shutil.copytree(root / f"clean{seed}", run_dir)
        records.append(case_record(run_dir, test_id="test_x.py::test_acc<b>", run=i, seed=seed,
                                   verdicts={"accuracy_above_99": {"passed": False,
                                                                   "detail": "accuracy 0.31"},
                                             "seeds_differ": True},
                                   relative_to=session))
    write_session_report(session, records, gate=True, latest=False)
    return root, session


def _copy(runs, tmp_path) -> Path:
    root = tmp_path / "runs"
    shutil.copytree(runs[0], root)
    return root


def test_report_aggregates_runs_into_md_and_self_contained_html(runs, tmp_path):
    md, page = build_report([runs[0]], tmp_path / "out")
    text = md.read_text()
    assert "## Outcome grid" in text and "halted" in text and "fixed" in text
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 2  # curves and decision timeline
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "background:#c62828" in html  # a halted cell, coloured


def test_gated_session_shows_every_verdict_and_the_failed_gate(runs, tmp_path):
    md, page = build_report([runs[1]], tmp_path / "out")
    text = md.read_text()
    assert "gate FAILED on 2 problem(s)" in text
    assert "accuracy_above_99" in text and "FAIL: accuracy 0.31" in text
    assert "seeds_differ" in text and "| pass |" in text
    assert "2 passed" not in text and "failed." in text
    html = page.read_text()
    assert 'class="banner bad"' in html and 'class="banner ok"' not in html
    assert "test_acc&lt;b&gt;" in html and "test_acc<b>" not in html  # escaped


def test_plain_runs_say_what_the_gate_would_do(runs, tmp_path):
    root = _copy(runs, tmp_path)
    metrics = root / "clean1" / "norms" / "reproducibility_metrics.json"
    data = json.loads(metrics.read_text())
    data["verdicts"] = {"replay": {"passed": False, "detail": "fingerprint differs"}}
    metrics.write_text(json.dumps(data))
    text = build_report([root], tmp_path / "out")[0].read_text()
    assert "the gate does not run on plain run directories; it would fail on 1" in text
    assert "FAIL: fingerprint differs" in text


def test_two_reports_in_the_same_second_do_not_overwrite(runs, tmp_path, monkeypatch):
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 1, 2, 3, 4, 5)
    monkeypatch.setattr("nora.reporting.datetime", Frozen)
    first = build_report([runs[0]], base=tmp_path)[0]
    second = build_report([runs[0]], base=tmp_path)[0]
    assert first.parent != second.parent and first.exists() and second.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report-2026-01-02_03-04-05",
                                                          "report-2026-01-02_03-04-05-2"]


def test_replays_are_counted_on_their_run_not_as_runs(runs, tmp_path):
    root = _copy(runs, tmp_path)
    for name in ("a", "b"):
        shutil.copytree(runs[0] / "clean2", root / "clean1" / "replays" / name)
    (source,) = collect([root])
    assert len(source.records) == 5
    by_label = {r["label"]: r for r in source.records}
    assert by_label["clean1"]["replays"] == 2
    assert "5 run(s) from 1 source(s) (and 2 replay(s), counted on their runs)" in \
        build_report([root], tmp_path / "out")[0].read_text()


def test_grid_headers_and_missing_values_are_readable(runs, tmp_path):
    text = build_report([runs[0]], tmp_path / "out")[0].read_text()
    grid = text.split("## Outcome grid")[1].split("##")[0]
    assert "| violation | norm_aware / strict | norm_aware / balanced |" in grid
    assert "| none | — | clean |" in grid
    for bad in (r"\('", r"\bnan\b", "<NA>", r"\bNone\b"):
        assert not re.search(bad, text), bad


def test_findings_and_verification_sections(runs, tmp_path):
    root = _copy(runs, tmp_path)
    metrics = root / "balanced" / "norms" / "reproducibility_metrics.json"
    data = json.loads(metrics.read_text())
    data["findings"] = [{"violation": "amp_nan", "severity": "high", "source": "injected",
                         "event": "step", "step": 3, "evidence": {"nonfinite": ["w"]},
                         "false_positive": False}]
    metrics.write_text(json.dumps(data))
    (root / "clean3" / "verification.json").write_text(json.dumps(
        {"verdict": "failed", "audited_steps": 2, "total_steps": 8, "cost_ratio": 0.25,
         "first_divergent_step": 5}))
    text = build_report([root], tmp_path / "out")[0].read_text()
    assert "| balanced | amp_nan | high | injected | step | 3 | no |" in text
    assert "| clean3 | failed | 2 of 8 | 0.25 | 5 |" in text


def _records(runs) -> list[dict]:
    return collect([runs[0]])[0].records


def test_learning_curves_do_not_overlap_and_have_unique_legends_and_integer_ticks(runs):
    records = _records(runs)
    extra = [{**r, "label": f"x{i}", "violation": f"v{i}"} for i, r in enumerate(records * 2)
             if r["status"] == "done"]
    fig, caption = curves_figure(records + extra, max_panels=4)
    assert caption.startswith("Loss per step; showing 4 of ")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    boxes = [ax.get_tightbbox(renderer) for ax in axes]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    labels += [t.get_text() for ax in axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert len(labels) == len(set(labels)) and not any("seed " in lb for lb in labels)
    for ax in axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)


def test_decision_timeline_keeps_full_labels_and_says_when_cut(runs):
    records = _records(runs)
    long = "tests/test_a_rather_long_module_name.py::test_enforcement[norm_aware-balanced-x]"
    many = [{**r, "label": f"{long}{i}"} for i in range(5) for r in records
            if r.get("agent_decisions")]
    fig, caption = timeline_figure(many, max_runs=4)
    assert f"showing 4 of {len(many)} runs with decisions" in caption
    shown = [t.get_text().replace("\n", "") for t in fig.axes[0].get_yticklabels()]
    assert shown == [m["label"] for m in many[:4]]
    fig.canvas.draw()
    lo, hi = fig.axes[0].get_xlim()
    ticks = [t for t in fig.axes[0].get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_report_cli_bad_path_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_report_renders_in_headless_chromium(runs, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    _, page = build_report([runs[0], runs[1]], tmp_path / "out")
    shot = tmp_path / "shot.png"
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400",
                           f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    red = sum(n for n, (r, g, b) in colours if (r, g, b) == (0xc6, 0x28, 0x28))
    assert red > 5_000                # the failed-gate banner and halted cells are painted
    assert len(colours) > 200         # plots, not a blank page


def test_a_loss_that_goes_non_finite_is_marked_not_left_blank():
    nan = float("nan")
    record = {"status": "done", "trainer": "supervised", "mode": "pipeline",
              "regime": "balanced", "violation": "amp_nan", "label": "r",
              "curve": [(0, 2.4), (1, nan), (2, nan), (3, nan)]}
    fig, _ = curves_figure([record])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["loss not finite from step 1"]
    assert ax.get_xlim() == (-0.5, 3.5)
    assert ax.lines[0].get_marker() == "o"      # the one finite point is visible
