"""Determinism switches: set as torch would set them, without loading torch._inductor."""
from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys, torch
from nora.seeding import set_determinism
set_determinism(True)
assert torch.are_deterministic_algorithms_enabled()
assert "torch._inductor.config" not in sys.modules
import torch._inductor.config as inductor
assert inductor.deterministic is True          # a later torch.compile sees the choice
set_determinism(False)
assert not torch.are_deterministic_algorithms_enabled() and inductor.deterministic is False
set_determinism(True)
assert torch.are_deterministic_algorithms_enabled() and inductor.deterministic is True
print("ok")
"""


def test_determinism_without_inductor_import_reaches_a_later_inductor() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
