"""What ``nora train`` tells a user without training: ``--help`` lists every config
group's choices, ``--cfg job`` prints the composed config, options go anywhere."""
from __future__ import annotations

import subprocess
from importlib import resources
from pathlib import Path

import pytest
import yaml

from nora.cli import main
from nora.cli_help import choices
from nora.config.compose import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_train_help_lists_every_config_group_and_choice(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    conf = resources.files("nora.conf")
    groups = [p for p in conf.iterdir() if p.is_dir() and not p.name.startswith("_")]
    assert {g.name for g in groups} >= {"modes", "regime", "violation", "trainer"}
    flat = " ".join(out.split())
    for group in groups:
        names = sorted(f.name[:-5] for f in group.iterdir() if f.name.endswith(".yaml"))
        assert f"{group.name} " in out
        for name in names:
            assert name in flat, (group.name, name)
    assert "norm_aware*" in flat and "balanced*" in flat and "supervised*" in flat
    assert "hydra/launcher" in out and "basic*" in flat


def test_choices_come_from_the_conf_folders_and_hydra():
    found = choices()
    assert found["regime"] == ["balanced", "exploratory", "strict"]
    assert "none" in found["violation"] and "basic" in found["hydra/launcher"]


def test_cfg_job_prints_the_validated_config_and_trains_nothing(tmp_path, monkeypatch,
                                                                 capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "regime=strict", "--cfg", "job", "train.epochs=3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = load_config(["regime=strict", "train.epochs=3"]).model_dump(mode="json")
    assert printed == expected
    assert printed["regime"]["halt_on_violations"] is True and printed["train"]["epochs"] == 3
    assert not (tmp_path / "runs").exists()


def test_multirun_and_cfg_anywhere_among_the_overrides(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "seed=1,2", "--multirun", "regime=strict", "--cfg", "job"]) == 0
    out = capsys.readouterr().out
    jobs = [yaml.safe_load(part) for part in out.split("# job ")[1:]]
    assert [j["seed"] for j in jobs] == [1, 2]
    assert {j["regime"]["name"] for j in jobs} == {"strict"}
    assert not (tmp_path / "runs").exists()


def test_cfg_rejects_unknown_section(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--cfg", "hydra"])
    assert info.value.code == 2
    assert "'job'" in capsys.readouterr().err


def test_make_bench_runs_every_benchmark_in_quick_mode():
    # -o: never remake the venv stamp (a fresh clone's mtimes would ask for an install)
    proc = subprocess.run(["make", "-n", "-o", ".venv/.installed", "bench", "BIN=bin"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    lines = [ln for ln in proc.stdout.splitlines() if "benchmarks/bench_" in ln]
    benches = sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py"))
    assert sorted(ln.split("benchmarks/")[1].split()[0] for ln in lines) == benches
    assert all("--reps" in ln or "--rounds" in ln for ln in lines)   # quick mode


def test_readme_links_resolve_inside_the_repo():
    import re

    text = (ROOT / "README.md").read_text()
    assert "../shared" not in text
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert "docs/design.md" in local
    for link in local:
        assert (ROOT / link).exists(), link
    design = (ROOT / "docs" / "design.md").read_text()
    assert "../shared" not in design and "seed document" not in design
