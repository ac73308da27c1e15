"""compare: verdicts on tensors, states and run directories; a planted divergence is found."""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nora.analysis.compare import MISSING, assert_identical, compare, main
from nora.errors import NoraError
from nora.hashing import fingerprint, tensor_hashes

MANIFEST: dict[str, Any] = {
    "config": {"seed": 7, "train": {"epochs": 1, "lr": 0.1}, "trainer": "supervised"},
    "config_changes": [], "seeds": {"seed": 7},
    "env": {"torch_threads": 1, "versions": {"torch": torch.__version__}, "device": "cpu",
            "git_commit": None, "git_dirty": None, "platform": "linux"},
    "dataset_fingerprint": "d" * 32, "fingerprint": "f" * 32,
}


def _flat_state(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v.clone() for k, v in model.state_dict().items()}
    for idx, per_param in opt.state_dict()["state"].items():
        state.update({f"optimizer.state.{idx}.{k}": v.clone() for k, v in per_param.items()})
    return state


def train_run(run_dir: Path, *, steps: int = 8, perturb_step: int | None = None,
              manifest: dict[str, Any] | None = None) -> Path:
    """Train a tiny model and write a run directory in the core's format.

    The body is frozen so that a perturbation of ``head.weight`` stays in the head.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)           # tiny ops: threads only add waiting on a busy machine
    try:
        return _train_run(run_dir, steps, perturb_step, manifest)
    finally:
        torch.set_num_threads(threads)


def _train_run(run_dir: Path, steps: int, perturb_step: int | None,
               manifest: dict[str, Any] | None) -> Path:
    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.add_module("body", torch.nn.Linear(6, 5))
    model.add_module("head", torch.nn.Linear(5, 3))
    model.body.requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 16, 6, generator=g), torch.randint(0, 3, (16, 16), generator=g)
    lines = []
    for step in range(steps):
        if step == perturb_step:
            with torch.no_grad():
                model.head.weight[0, 0] += 1e-3
        loss = torch.nn.functional.cross_entropy(model(x[step]), y[step])
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec = {"kind": "step", "step": step, "epoch": 0, "loss": loss.item(),
               "loss_bits": struct.pack(">f", loss.item()).hex()}
        if step % 2 == 0:
            rec["param_hash"] = fingerprint(model.state_dict())
        lines.append(json.dumps(rec))
        if step % 4 == 3:
            lines.append(json.dumps({"kind": "eval", "step": step, "acc": 0.5}))
    (run_dir / "state").mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (run_dir / "manifest.json").write_text(json.dumps(manifest or MANIFEST))
    state = _flat_state(model, opt)
    torch.save(state, run_dir / "state" / "final.pt")
    (run_dir / "state" / "tensors.json").write_text(
        json.dumps({"step": steps - 1, "hashes": tensor_hashes(state)}))
    return run_dir


def test_identical_runs(tmp_path: Path) -> None:
    a, b = train_run(tmp_path / "a"), train_run(tmp_path / "b")
    c = compare(a, b)
    assert c.identical and c.first_divergent_step is None and c.divergent_tensors == []
    assert c.max_abs_diff == 0.0 and c.manifest_diff == {} and c.details == []
    assert "bit-identical" in c.report() and c.report().splitlines()[-1].startswith("Hint:")
    assert_identical(str(a), str(b))


def test_planted_divergence_names_step_and_tensor(tmp_path: Path) -> None:
    a, b = train_run(tmp_path / "a"), train_run(tmp_path / "b", perturb_step=5)
    c = compare(a, b)
    assert not c.identical
    assert c.first_divergent_step == 5
    assert c.divergent_tensors[0] == "model.head.weight"
    assert not any(name.startswith("model.body") for name in c.divergent_tensors)
    assert "optimizer.state.0.exp_avg" in c.divergent_tensors     # head.weight's Adam moments
    assert 0 < c.max_abs_diff < 1
    report = c.report()
    assert "first divergence at step 5" in report and "model.head.weight" in report
    assert "nondeterministic" in report                   # same manifest: not the environment
    table = report[report.index("Steps around"):].splitlines()[1:6]
    assert [int(line.split()[-4]) for line in table[1:]] == [3, 4, 5, 6]
    assert table[3].lstrip().startswith("> ") and not table[2].lstrip().startswith(">")
    assert report.splitlines()[-1].startswith("Hint: ")
    with pytest.raises(AssertionError, match="first divergence at step 5"):
        assert_identical(a, b)


def test_thread_count_change_is_explained(tmp_path: Path) -> None:
    two_threads = json.loads(json.dumps(MANIFEST))
    two_threads["env"]["torch_threads"] = 2
    a = train_run(tmp_path / "a")
    b = train_run(tmp_path / "b", perturb_step=0, manifest=two_threads)
    c = compare(a, b)
    assert c.manifest_diff == {"env.torch_threads": (1, 2)}
    assert c.first_divergent_step == 0
    assert "the environment differs (env.torch_threads)" in c.cause
    assert "manifest env.torch_threads: 1 != 2 (CPU float reductions" in c.report()
    assert "torch.set_num_threads(1)" in c.hint and "environment sensitivity" in c.hint


def test_manifest_diff_flattens_config_and_data(tmp_path: Path) -> None:
    other = json.loads(json.dumps(MANIFEST))
    other["config"]["train"]["lr"] = 0.2
    other["config_changes"] = [{"step": 3, "key": "train.lr", "value": 0.2}]
    other["dataset_fingerprint"] = "e" * 32
    del other["env"]["platform"]
    c = compare(train_run(tmp_path / "a"), train_run(tmp_path / "b", manifest=other))
    assert c.manifest_diff["config.train.lr"] == (0.1, 0.2)
    assert c.manifest_diff["config_changes"][1] == other["config_changes"]
    assert c.manifest_diff["dataset_fingerprint"] == ("d" * 32, "e" * 32)
    assert c.manifest_diff["env.platform"] == ("linux", MISSING)
    assert c.identical                                # same results despite the manifests
    assert "Their manifests differ" in c.report()


def test_shorter_run_diverges_where_it_stops(tmp_path: Path) -> None:
    c = compare(train_run(tmp_path / "a", steps=8), train_run(tmp_path / "b", steps=6))
    assert c.first_divergent_step == 6
    assert any("only" in d and "has this step" in d for d in c.details)


def test_tensors_and_arrays() -> None:
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert compare(t, t.clone()).identical
    assert compare(t.numpy(), t.numpy().copy()).identical
    u = t.clone()
    u[1, 2] += 0.5
    c = compare(t, u)
    assert (c.identical, c.max_abs_diff, c.divergent_tensors) == (False, 0.5, ["<tensor>"])
    assert compare(np.float64([1, 2]), np.float64([1, 2.25])).max_abs_diff == 0.25
    nan = torch.tensor([float("nan"), 1.0])
    assert compare(nan, nan.clone()).identical
    assert compare(nan, torch.tensor([0.0, 1.0])).max_abs_diff == math.inf


def test_nested_state_and_modules() -> None:
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    m(torch.ones(1, 3)).sum().backward()
    opt.step()
    a = {"model": m.state_dict(), "optimizer": opt.state_dict(), "step": 1}
    b = {"model": {k: v.clone() for k, v in m.state_dict().items()},
         "optimizer": opt.state_dict(), "step": 1}
    assert compare(a, b).identical
    b["optimizer"] = {"state": {0: {"momentum_buffer": torch.zeros(2, 3)}},
                      "param_groups": opt.state_dict()["param_groups"]}
    b["step"] = 2
    c = compare(a, b)
    assert c.divergent_tensors == ["optimizer.state.0.momentum_buffer",
                                   "optimizer.state.1.momentum_buffer", "step"]
    assert c.max_abs_diff == math.inf                     # state 1 is missing in B
    assert "missing in B" in c.report()
    assert compare(m, torch.nn.Linear(3, 2)).divergent_tensors == ["weight", "bias"]


def test_structure_and_type_problems() -> None:
    c = compare({"w": torch.zeros(2)}, {"w": torch.zeros(3), "v": torch.zeros(1)})
    assert c.divergent_tensors == ["w", "v"] and c.max_abs_diff == math.inf
    assert "shape differs ((2,) vs (3,))" in c.report()
    assert "dtype differs" in compare(torch.zeros(2), torch.zeros(2, dtype=torch.float64)).report()
    json.dumps(c.to_dict(), allow_nan=False)
    assert c.to_dict()["max_abs_diff"] == "inf"
    with pytest.raises(NoraError, match="Tensor"):
        compare(torch.zeros(1), {"w": torch.zeros(1)})
    with pytest.raises(NoraError, match="path"):
        compare("runs/x", torch.zeros(1))


def test_assert_identical_tolerance() -> None:
    a, b = torch.zeros(3), torch.tensor([0.0, 1e-6, 0.0])
    with pytest.raises(AssertionError, match="max \\|a-b\\| = 1e-06"):
        assert_identical(a, b)
    assert_identical(a, b, atol=1e-5)


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = train_run(tmp_path / "a"), train_run(tmp_path / "b")
    assert main([str(a), str(b)]) == 0
    assert "bit-identical" in capsys.readouterr().out
    c = train_run(tmp_path / "c", perturb_step=2)
    assert main([str(a), str(c)]) == 1
    assert "first divergence at step 2" in capsys.readouterr().out
    assert main([str(a), str(c), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["first_divergent_step"] == 2
    assert main([str(a), str(tmp_path / "nope")]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err
    assert main([str(a)]) == 2
    (tmp_path / "empty").mkdir()
    assert main([str(a), str(tmp_path / "empty")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_bad_metrics_line_is_named(tmp_path: Path) -> None:
    a, b = train_run(tmp_path / "a"), train_run(tmp_path / "b")
    with (b / "metrics.jsonl").open("a") as fh:
        fh.write('{"kind": "step", "st\n')
    with pytest.raises(NoraError, match="metrics.jsonl' line 11"):
        compare(a, b)
