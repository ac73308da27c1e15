"""``nora.compare`` on run results (``RunResult`` of ``nora.train``): they stand for their run
directories, so the verdict has the step records and the manifest diff."""
from __future__ import annotations

import nora


def test_compare_accepts_run_results(tmp_path):
    overrides = ["train.epochs=1", "trainer.train_subset=64", "modes=pipeline"]
    a = nora.train(nora.load_config([*overrides, "seed=1"]), run_dir=tmp_path / "a")
    b = nora.train(nora.load_config([*overrides, "seed=1"]), run_dir=tmp_path / "b")
    c = nora.train(nora.load_config([*overrides, "seed=2"]), run_dir=tmp_path / "c")
    same = nora.compare(a, b)
    assert same.identical and same.labels == (str(tmp_path / "a"), str(tmp_path / "b"))
    differ = nora.compare(a, c)
    assert not differ.identical
    assert differ.first_divergent_step is not None
    assert any(k.startswith("config.seed") or k.startswith("seeds.") for k in differ.manifest_diff)
