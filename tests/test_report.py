from __future__ import annotations

import shutil
import subprocess

import pytest

from nora.cli import main
from nora.reporting import build_report


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import nora

    root = tmp_path_factory.mktemp("runs")
    small = ["train.epochs=1", "trainer.train_subset=256"]
    for seed in (1, 2, 3):
        nora.train(nora.load_config([*small, f"seed={seed}"]), run_dir=root / f"clean{seed}")
    for regime in ("strict", "balanced"):
        try:
            nora.train(nora.load_config([*small, f"regime={regime}", "violation=amp_nan"]),
                       run_dir=root / "session" / "runs" / regime)
        except nora.NormViolationError:
            pass
    return root


def test_report_aggregates_runs_into_md_and_self_contained_html(runs, tmp_path):
    md, page = build_report([runs], tmp_path / "out")
    text = md.read_text()
    assert "## Outcome grid" in text and "halted" in text and "fixed" in text
    assert text.count("clean") >= 3
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 2  # curves and decision timeline
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "background:#c62828" in html  # a halted cell, coloured


def test_report_cli_bad_path_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_report_renders_in_headless_chromium(runs, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    _, page = build_report([runs], tmp_path / "out")
    shot = tmp_path / "shot.png"
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400",
                           f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert shot.stat().st_size > 50_000  # a page with a grid and plots, not a blank one
