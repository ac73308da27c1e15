from __future__ import annotations

import pytest
import torch

from nora.checkpoint import audit, load_checkpoint, save_checkpoint
from nora.errors import CheckpointError


def test_roundtrip_with_checksum(tmp_path):
    path = tmp_path / "c.pt"
    digest = save_checkpoint({"model": {"w": torch.ones(3)}, "position": {"step": 4}}, path)
    state = load_checkpoint(path, expected_sha256=digest)
    assert torch.equal(state["model"]["w"], torch.ones(3)) and state["position"]["step"] == 4
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_checkpoint_is_refused(tmp_path, damage):
    path = tmp_path / "c.pt"
    save_checkpoint({"model": {"w": torch.arange(100.0)}}, path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt or altered"):
        load_checkpoint(path)


def test_missing_and_unverifiable(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"model": {}}, tmp_path / "raw.pt")
    with pytest.raises(CheckpointError, match="no recorded checksum"):
        load_checkpoint(tmp_path / "raw.pt")


def test_audit_names_missing_parts():
    assert audit({"model": 1, "position": 2}) == ["optimizer", "scheduler", "scaler", "rng",
                                                   "agent", "config_hash"]
