"""check_reproducible: process isolation catches what an in-process rerun cannot."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import torch

from nora.analysis.isolation import ReplicaError, check_reproducible, warm_up
from nora.errors import NoraError

warm_up(2)   # start the template interpreters now, while other modules' tests run

NAMES = ["cat", "dog", "bird", "fish", "horse", "sheep", "cow", "goat"]


# Training functions live at module level so a fresh interpreter can import them.
def label_map_from_set(seed: int) -> torch.Tensor:
    """The bug: label ids follow the iteration order of a set of strings."""
    label_of = {name: i for i, name in enumerate(set(NAMES))}
    g = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, len(NAMES), (32,), generator=g)
    return torch.tensor([label_of[NAMES[int(i)]] for i in picks])


def train_clean(seed: int, steps: int = 3) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    label_of = {name: i for i, name in enumerate(sorted(set(NAMES)))}
    model = torch.nn.Linear(4, len(label_of))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(steps):
        loss = model(torch.randn(8, 4, generator=g)).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def unseeded(seed: int) -> dict[str, torch.Tensor]:
    return {"w": torch.randn(3)}                         # ignores its seed


_CALLS: list[int] = []


def counts_calls(seed: int) -> torch.Tensor:
    """Module-level state: the second call in one process sees the first."""
    _CALLS.append(seed)
    return torch.tensor(len(_CALLS))


def fails(seed: int) -> None:
    print("loading data")
    raise ValueError(f"no data for seed {seed}")


def sleeps(seed: int, pid_file: str) -> torch.Tensor:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(60)
    return torch.zeros(1)


def leaves_a_helper(seed: int, pid_file: str) -> torch.Tensor:
    helper = subprocess.Popen(["sleep", "60"])
    Path(pid_file).write_text(str(helper.pid))
    return torch.zeros(1)


def _gone(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                return True                              # a zombie waiting to be reaped
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_hash_order_bug_only_shows_across_processes() -> None:
    in_process = check_reproducible(label_map_from_set, seed=0, isolation="inprocess")
    assert in_process.identical
    across = check_reproducible(label_map_from_set, seed=0, isolation="process")
    assert not across.identical
    assert across.divergent_tensors == ["<tensor>"]
    report = across.report()
    assert "PYTHONHASHSEED" in report and report.splitlines()[-1].startswith("Hint:")


@pytest.mark.parametrize("isolation", ["process", "inprocess"])
def test_clean_function_is_reproducible(isolation: str) -> None:
    c = check_reproducible(train_clean, seed=3, isolation=isolation, kwargs={"steps": 2})
    assert c.identical, c.report()
    assert c.max_abs_diff == 0.0


def test_every_replica_starts_clean() -> None:
    assert not check_reproducible(counts_calls, seed=0, isolation="inprocess").identical
    assert check_reproducible(counts_calls, seed=0).identical    # the template never ran it
    assert check_reproducible(counts_calls, seed=0).identical


def test_unseeded_function_differs_in_process_too() -> None:
    c = check_reproducible(unseeded, seed=0, runs=3, isolation="inprocess")
    assert not c.identical and c.divergent_tensors == ["w"]
    assert "run 1" in c.report() and "run 2" in c.report()


@pytest.mark.parametrize("isolation", ["process", "inprocess"])
def test_raising_function_reports_its_traceback(isolation: str) -> None:
    with pytest.raises(ReplicaError) as info:
        check_reproducible(fails, seed=5, isolation=isolation)
    message = str(info.value)
    assert "test_isolation.fails raised in" in message
    assert "ValueError: no data for seed 5" in message and "in fails" in message
    if isolation == "process":
        assert "loading data" in message                 # the replica's own output


def test_timeout_kills_the_replica(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    start = time.monotonic()
    with pytest.raises(ReplicaError, match="did not finish"):
        check_reproducible(sleeps, seed=0, args=(str(pid_file),), timeout=5.0)
    assert time.monotonic() - start < 20
    assert _gone(int(pid_file.read_text()))
    assert check_reproducible(train_clean, seed=1).identical   # the pool still works


def test_replica_leftovers_are_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    assert check_reproducible(leaves_a_helper, seed=0, args=(str(pid_file),),
                              parallel=False).identical
    assert _gone(int(pid_file.read_text()))


def test_unimportable_functions_are_named() -> None:
    with pytest.raises(NoraError, match="lambda"):
        check_reproducible(lambda seed: torch.zeros(1), seed=0)

    def nested(seed: int) -> torch.Tensor:
        return torch.zeros(1)
    with pytest.raises(NoraError, match="nested"):
        check_reproducible(nested, seed=0)

    def script_fn(seed: int) -> torch.Tensor:
        return torch.zeros(1)
    script_fn.__module__, script_fn.__qualname__ = "__main__", "script_fn"
    with pytest.raises(NoraError, match="script_fn is defined in __main__"):
        check_reproducible(script_fn, seed=0)
    with pytest.raises(NoraError, match="cannot be pickled"):
        check_reproducible(train_clean, seed=0, kwargs={"steps": lambda: 1})


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"runs": 1}, "runs"), ({"isolation": "thread"}, "isolation"),
    ({"hash_seeds": [1, 1]}, "hash_seeds"), ({"hash_seeds": [1, 2**32]}, "hash_seeds"),
])
def test_bad_arguments_are_named(kwargs: dict, needle: str) -> None:
    with pytest.raises(NoraError, match=needle):
        check_reproducible(train_clean, seed=0, **kwargs)


def naps(seed: int, seconds: float) -> torch.Tensor:
    start = time.time()
    time.sleep(seconds)
    return torch.tensor([start, time.time()], dtype=torch.float64)


def test_one_template_runs_replicas_side_by_side(tmp_path):
    # nora verify's -j N: N jobs sent to one template run at once, each reported by its pid
    import pickle
    import sys

    from nora.templates import POOL, default_hash_seeds

    payload = tmp_path / "payload"
    payload.write_bytes(pickle.dumps((1, (1.0,), {})))
    base = {"module": __name__, "qualname": "naps", "file": __file__, "payload": str(payload),
            "cwd": os.getcwd(), "sys_path": list(sys.path), "env": dict(os.environ),
            "threads": 1}
    with POOL.lock:
        (t,) = POOL.get(default_hash_seeds(1))
        t.wait_ready()
        pids = []
        for i in range(2):
            t.send(dict(base, **{k: str(tmp_path / f"{i}.{k}") for k in ("out", "err", "log")}))
            pids.append(t.read(time.monotonic() + 30, "started")["pid"])
        done = {t.read(time.monotonic() + 30, "done")["pid"] for _ in pids}
        assert done == set(pids)
    (a0, a1), (b0, b1) = (torch.load(tmp_path / f"{i}.out").tolist() for i in range(2))
    assert b0 < a1 and a0 < b1                       # they overlapped: not one after the other
