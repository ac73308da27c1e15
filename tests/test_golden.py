from __future__ import annotations

import torch

from nora.golden import GoldenStore, platform_key


def test_missing_then_recorded_then_matching_then_planted_change(run_case, tmp_path):
    store, plat = GoldenStore(tmp_path / "golden"), platform_key("cpu", 1)
    run = run_case("modes=pipeline")
    assert store.check("exp", "case", plat, run.run_dir).status == "missing"
    assert not (tmp_path / "golden").exists()  # a check never creates a baseline
    store.update("exp", "case", plat, run.run_dir)
    again = run_case("modes=pipeline")
    assert store.check("exp", "case", plat, again.run_dir).passed
    other = run_case("modes=pipeline", "train.lr=0.004")
    verdict = store.check("exp", "case", plat, other.run_dir)
    assert verdict.status == "mismatch" and "model.features.0.weight" in verdict.divergent_tensors
    assert "model.features.0.weight" in verdict.report() and "Hint:" in verdict.report()


def test_planted_change_in_one_tensor_is_named(run_case, tmp_path):
    store, plat = GoldenStore(tmp_path), platform_key("cpu", 1)
    run = run_case("modes=pipeline")
    store.update("exp", "c", plat, run.run_dir)
    tensors = run.run_dir / "state" / "tensors.json"
    import json

    data = json.loads(tensors.read_text())
    data["hashes"]["model.head.5.bias"] = "0" * 32
    tensors.write_text(json.dumps(data))
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    manifest["fingerprint"] = "changed"
    (run.run_dir / "manifest.json").write_text(json.dumps(manifest))
    verdict = store.check("exp", "c", plat, run.run_dir)
    assert verdict.divergent_tensors == ["model.head.5.bias"]


def test_platform_key_separates_thread_counts():
    assert platform_key("cpu", 1) != platform_key("cpu", 2)
    assert torch.__version__ in platform_key("cpu", 1)
