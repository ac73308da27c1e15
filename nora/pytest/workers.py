"""What differs between xdist workers: the device, the DDP port range, and the one session
directory they all write into (chosen by the controller, handed over in ``workerinput``)."""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pytest

from nora.pytest.seeds import SEED_BASE

PORTS_PER_WORKER = 50
PORT_LOW, PORT_HIGH = 20000, 32000   # below Linux's ephemeral range (32768-60999)
_SESSION_DIR, _PORT_BASE = "nora_session_dir", "nora_port_base"


def new_session_dir(report_root: Path) -> Path:
    """``<root>/<date_time>-<4 hex>``: sortable, and unique between concurrent sessions."""
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return report_root / f"{stamp}-{random.SystemRandom().randrange(16**4):04x}"


def new_port_base() -> int:
    """A random base, so that concurrent sessions on one machine start apart."""
    slots = (PORT_HIGH - PORT_LOW) // PORTS_PER_WORKER
    return PORT_LOW + PORTS_PER_WORKER * random.SystemRandom().randrange(slots)


@dataclass(frozen=True)
class WorkerInfo:
    """This process's place in the session: ``main`` without xdist, ``gw<N>`` under it."""

    worker_id: str
    index: int
    count: int
    session_dir: Path
    port_base: int

    @property
    def ports(self) -> range:
        """This worker's DDP ports: disjoint from every other worker's in the session."""
        span = PORT_HIGH - PORT_LOW
        start = PORT_LOW + (self.port_base - PORT_LOW + self.index * PORTS_PER_WORKER) % span
        return range(start, start + PORTS_PER_WORKER)

    @classmethod
    def from_config(cls, config: pytest.Config, report_root: Path) -> WorkerInfo:
        winput: dict[str, Any] | None = getattr(config, "workerinput", None)
        if winput is None:
            return cls("main", 0, 1, new_session_dir(report_root), new_port_base())
        wid = str(winput.get("workerid", "gw0"))
        index = int(wid[2:]) if wid[2:].isdigit() else 0
        count = int(winput.get("workercount", index + 1))
        session = winput.get(_SESSION_DIR) or str(new_session_dir(report_root))
        base = int(winput.get(_PORT_BASE) or new_port_base())
        return cls(wid, index, count, Path(session), base)


def worker_device(spec: str, index: int) -> str:
    """The device this worker trains on: ``cuda:<index mod visible GPUs>`` for auto/cuda
    (``CUDA_VISIBLE_DEVICES`` decides what is visible), else the spec itself."""
    if spec == "cpu" or spec.startswith("cuda:"):
        return spec
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return f"cuda:{index % count}" if count else "cpu"


class XdistHooks:
    """Registered on the controller only when xdist is active: hands each worker the session
    directory, the port base and the base of per-test seeds, so workers agree on all three
    without talking to each other."""

    def __init__(self, info: WorkerInfo, seed_base: Callable[[], int | None]) -> None:
        self.info, self.seed_base = info, seed_base

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_SESSION_DIR] = str(self.info.session_dir)
        node.workerinput[_PORT_BASE] = self.info.port_base
        try:
            node.workerinput[SEED_BASE] = self.seed_base()
        except ValueError:   # a bad ini seed: each worker reports it on the cases it hits
            pass
