"""check_environment: a float reduction depends on the thread count; integer math does not."""
from __future__ import annotations

import json

import pytest
import torch

from nora.analysis.environment import EnvironmentReport, check_environment
from nora.analysis.isolation import ReplicaError
from nora.errors import NoraError

N = 2**22    # large enough that torch splits the sum across threads


# Training functions at module level, so isolation="process" can import them too.
def float_sum(seed: int) -> dict[str, torch.Tensor]:
    """A float reduction over a large tensor: 1 and 2 threads add in different orders."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, generator=g)
    return {"bias": torch.zeros(3), "total": x.sum().reshape(1)}


def integer_sum(seed: int) -> torch.Tensor:
    """Integer addition is associative: no thread count changes it."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1000, 1000, (N,), generator=g).sum()


def unseeded(seed: int) -> torch.Tensor:
    return torch.randn(4)                       # ignores its seed: the user's bug


def threads_seen(seed: int) -> torch.Tensor:
    return torch.tensor([torch.get_num_threads(), int(torch.backends.cudnn.benchmark)])


def fails(seed: int) -> None:
    raise RuntimeError("out of data")


def _settings() -> tuple[int, bool]:
    return torch.get_num_threads(), torch.backends.cudnn.benchmark


def test_a_float_reduction_is_reported_as_environment_sensitivity() -> None:
    before = _settings()
    env = check_environment(float_sum, seed=0, threads=(1, 2))
    assert _settings() == before                     # the caller's settings are restored
    assert isinstance(env, EnvironmentReport)
    assert env.reproducible and env.sensitive
    [finding] = env.findings
    assert finding["kind"] == "environment_sensitivity"
    assert (finding["setting"], finding["reference"], finding["value"]) == ("torch_threads", 1, 2)
    assert finding["divergent_tensors"] == ["total"]                  # not the bias
    assert 0 < finding["max_abs_diff"] < 1e-2
    report = env.report()
    assert "environment sensitivity" in report and "not a bug in the function" in report
    assert "torch_threads=2: DIFFERS" in report and "Hint:" in report
    assert "set_num_threads" in report


def test_an_integer_only_function_has_no_finding() -> None:
    env = check_environment(integer_sum, seed=0, threads=(1, 2))
    assert env.reproducible and not env.sensitive and env.findings == []
    assert [c["identical"] for c in env.checks] == [True, True]
    assert "No findings" in env.report()


def test_each_run_gets_its_settings_and_cudnn_benchmark_is_toggled() -> None:
    before = _settings()
    env = check_environment(threads_seen, seed=0, threads=(2, 1),
                            cudnn_benchmark=(False, True))
    assert _settings() == before
    assert env.reference == {"torch_threads": 2, "cudnn_benchmark": False}
    assert [c["label"] for c in env.checks][1:] == ["torch_threads=1", "cudnn_benchmark=True"]
    # threads_seen returns the settings, so both changed settings show up as findings
    assert [(f["setting"], f["value"]) for f in env.findings] == [("torch_threads", 1),
                                                                   ("cudnn_benchmark", True)]


def test_nondeterminism_is_not_blamed_on_the_environment() -> None:
    env = check_environment(unseeded, seed=0)
    assert not env.reproducible and not env.sensitive
    [finding] = env.findings
    assert finding["kind"] == "nondeterminism"
    assert "not reproducible even with the same settings" in env.report()


def test_process_isolation_finds_the_same() -> None:
    env = check_environment(float_sum, seed=1, isolation="process")
    assert env.reproducible and env.sensitive
    assert env.findings[0]["setting"] == "torch_threads"


def test_to_dict_is_plain_json() -> None:
    data = check_environment(float_sum, seed=2).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["sensitive"] is True and data["reference"]["torch_threads"] == 1


def test_a_raising_function_and_settings_are_restored() -> None:
    before = _settings()
    with pytest.raises(ReplicaError, match="out of data"):
        check_environment(fails, seed=0)
    assert _settings() == before


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"threads": (1,)}, "nothing to vary"), ({"threads": (0, 1)}, "threads"),
    ({"threads": (2, 2)}, "threads"), ({"cudnn_benchmark": (1, 0)}, "cudnn_benchmark"),
    ({"isolation": "thread"}, "isolation"),
])
def test_bad_arguments_are_named(kwargs: dict, needle: str) -> None:
    with pytest.raises(NoraError, match=needle):
        check_environment(integer_sum, seed=0, **kwargs)
