"""nora.ddp.run_group: values from every rank, and a dead, hung or failing rank named
within the bound, with nothing left running."""
from __future__ import annotations

import multiprocessing as mp
import os
import re
import signal
import time

import pytest
import torch
import torch.distributed as dist

from nora.ddp import GroupError, free_port, resolve_backend, run_group, torchrun_env
from nora.errors import NoraError


# --- rank functions (module level: each rank imports them by name) ---------------------
def allreduce_rank(rank, world_size, offset=0):
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    return {"rank": rank, "world_size": world_size, "sum": t.item() + offset,
            "pid": os.getpid(), "backend": dist.get_backend()}


def ddp_step(rank, world_size):
    """One DDP step on a per-rank shard: gradients are synchronised, weights stay equal."""
    from nora.hashing import fingerprint

    g = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(4, 1)
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 4, generator=g))
        model.bias.zero_()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    x = torch.randn(8 * world_size, 4, generator=g)[rank::world_size]
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    ddp(x).pow(2).mean().backward()
    opt.step()
    return fingerprint(model.state_dict())


def kill_rank_one(rank, world_size):
    if rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    dist.all_reduce(torch.zeros(1))   # rank 0 would wait here forever
    return rank


def hang_rank_one(rank, world_size):
    if rank == 1:
        time.sleep(600)
    dist.all_reduce(torch.zeros(1))
    return rank


def raise_on_rank_zero(rank, world_size):
    if rank == 0:
        raise ValueError("bad shard on rank 0")
    dist.barrier()
    return rank


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _assert_no_orphans(pids):
    assert pids and all(_gone(p) for p in pids), "a rank process survived"
    assert not [c for c in mp.active_children() if c.name.startswith("nora-ddp-rank")]


# --- tests ------------------------------------------------------------------------------
def test_two_rank_gloo_group_returns_each_rank_value():
    out = run_group(allreduce_rank, 2, backend="gloo", timeout_s=60, kwargs={"offset": 10})
    assert [o["rank"] for o in out] == [0, 1]
    assert all(o["sum"] == 13.0 and o["world_size"] == 2 and o["backend"] == "gloo"
               for o in out)
    assert len({o["pid"] for o in out} | {os.getpid()}) == 3, "one process per rank"
    _assert_no_orphans([o["pid"] for o in out])


def test_ddp_gradients_are_synchronised():
    a, b = run_group(ddp_step, 2, backend="gloo", timeout_s=60)
    assert a == b


def test_a_killed_rank_fails_fast_naming_it():
    t0 = time.monotonic()
    with pytest.raises(GroupError, match=r"rank 1 died \(killed by SIGKILL\)") as info:
        run_group(kill_rank_one, 2, backend="gloo", timeout_s=30)
    assert time.monotonic() - t0 < 30, "a death must not wait for the timeout"
    assert info.value.ranks == [1]
    _assert_no_orphans(info.value.pids)


def test_a_hung_rank_fails_at_the_bound_naming_it():
    run_group(allreduce_rank, 2, backend="gloo", timeout_s=60)  # the forkserver is warm, so
    t0 = time.monotonic()                                       # ranks start at once
    with pytest.raises(GroupError) as info:
        run_group(hang_rank_one, 2, backend="gloo", timeout_s=3)
    elapsed = time.monotonic() - t0
    msg = str(info.value)
    # the bound is on silence, which starts once the ranks' start-up work is done
    silence = float(re.search(r"rank 1 \(pid \d+\): no progress for ([\d.]+) s", msg)[1])
    assert 3 <= silence < 3 + 3 and elapsed >= silence, f"{silence=:.1f} {elapsed=:.1f}"
    assert "rank 1 hung" in msg and info.value.ranks == [1]
    assert "in hang_rank_one" in msg and "(blocked in torch all_reduce)" in msg
    _assert_no_orphans(info.value.pids)


def test_a_raising_rank_is_named_with_its_traceback():
    with pytest.raises(GroupError, match="rank 0 raised") as info:
        run_group(raise_on_rank_zero, 2, backend="gloo", timeout_s=30)
    assert "ValueError: bad shard on rank 0" in str(info.value)
    _assert_no_orphans(info.value.pids)


def test_torchrun_environment_joins_instead_of_spawning(monkeypatch):
    port = free_port()
    env = {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert torchrun_env() == {"rank": 0, "world_size": 1, "addr": "127.0.0.1", "port": port}
    (out,) = run_group(allreduce_rank, 1, backend="gloo")
    assert out["pid"] == os.getpid() and out["sum"] == 1.0
    assert not dist.is_initialized(), "the group it created must be torn down"
    with pytest.raises(GroupError, match="WORLD_SIZE=1"):
        run_group(allreduce_rank, 2, backend="gloo")


def test_ports_and_backends():
    ports = range(21000, 21010)
    a, b = free_port(ports), free_port(ports)
    assert a in ports and b in ports and a != b
    assert torchrun_env({"RANK": "0"}) is None
    if not torch.cuda.is_available():
        assert resolve_backend("auto", 2) == "gloo"
    with pytest.raises(NoraError, match="backend='mpi'"):
        resolve_backend("mpi", 2)


@pytest.mark.ddp(world_size=2, timeout_s=60)
def test_ddp_group_fixture_uses_this_workers_ports(ddp_group):
    assert len(ddp_group.ports) == 50 and ddp_group.world_size == 2
    out = ddp_group.run(allreduce_rank)
    assert [o["sum"] for o in out] == [3.0, 3.0]


@pytest.mark.gpu
@pytest.mark.ddp(world_size=1)
def test_nccl_group_on_a_gpu(ddp_group, gpu_device):
    (out,) = ddp_group.run(allreduce_rank, backend="nccl")
    assert out["backend"] == "nccl" and out["sum"] == 1.0
