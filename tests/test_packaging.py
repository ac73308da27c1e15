"""``nora package``: archive + SHA256SUMS, a verified copy through fsspec, and a tampered
archive refused with the damaged file named."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from nora.cli import main
from nora.packaging import PackageCheckError, check_archive, package_run

fsspec = pytest.importorskip("fsspec")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A small run directory as the core writes it (text records and a binary checkpoint)."""
    rd = tmp_path / "2026-01-01_00-00-00-000000"
    (rd / "norms").mkdir(parents=True)
    (rd / "checkpoints").mkdir()
    (rd / "manifest.json").write_text(json.dumps({"status": "done", "config": {"seed": 1}}))
    (rd / "metrics.jsonl").write_text('{"kind": "step", "step": 0, "loss": 2.3}\n' * 50)
    (rd / "norms" / "reproducibility_metrics.json").write_text('{"outcome": "clean"}')
    (rd / "checkpoints" / "last.pt").write_bytes(bytes(range(256)) * 64)
    (rd / "norms" / ".agent_metrics.json.123.tmp").write_text("{")   # torn atomic write
    return rd


@pytest.fixture
def memory_root() -> str:
    fs = fsspec.filesystem("memory")
    yield "memory://nora-test/runs"
    fs.rm("/nora-test", recursive=True)


def _flip(archive: Path, member_suffix: str) -> str:
    """Flip one byte in the middle of a member's stored data; returns the member's name."""
    with zipfile.ZipFile(archive) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(member_suffix))
    raw = bytearray(archive.read_bytes())
    name_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    pos = info.header_offset + 30 + name_len + extra_len + info.compress_size // 2
    raw[pos] ^= 0x01
    archive.write_bytes(bytes(raw))
    return info.filename


def test_round_trip_through_memory_with_checksums(run_dir: Path, memory_root: str) -> None:
    done = package_run(run_dir, dest=memory_root)
    assert done.files == 4                                  # the .tmp leftover is not packed
    assert done.dest_url == f"{memory_root}/{run_dir.name}.zip"
    fs = fsspec.filesystem("memory")
    assert fs.cat_file(f"/nora-test/runs/{run_dir.name}.zip") == done.archive.read_bytes()
    result = check_archive(done.dest_url)
    assert result.ok and result.files == 4
    with zipfile.ZipFile(done.archive) as zf:
        sums = zf.read(f"{run_dir.name}/SHA256SUMS").decode().splitlines()
    assert len(sums) == 4 and all(len(line.split("  ")[0]) == 64 for line in sums)
    first = done.archive.read_bytes()
    assert package_run(run_dir).archive.read_bytes() == first    # same run, same bytes


@pytest.mark.parametrize("keep_sidecar", [True, False])
def test_one_flipped_byte_is_refused_naming_the_file(run_dir: Path, keep_sidecar: bool,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    archive = package_run(run_dir).archive
    if not keep_sidecar:
        Path(f"{archive}.sha256").unlink()
    member = _flip(archive, "checkpoints/last.pt")
    result = check_archive(archive)
    assert not result.ok
    assert any(p.startswith(member) for p in result.problems)
    assert not any("metrics.jsonl" in p for p in result.problems)    # only the bad file
    assert main(["package", "--check", str(archive)]) == 1
    err = capsys.readouterr().err
    assert "REFUSED" in err and member in err
    assert ("differs from its .sha256" in err) == keep_sidecar


def test_a_copy_damaged_in_transit_is_refused(run_dir: Path, memory_root: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from fsspec.implementations.memory import MemoryFileSystem

    def lossy_put(self, lpath, rpath, **kw):  # noqa: ANN001 - a transfer that drops a byte
        self.pipe_file(rpath, Path(lpath).read_bytes()[:-1])

    monkeypatch.setattr(MemoryFileSystem, "put_file", lossy_put)
    with pytest.raises(PackageCheckError, match="copy does not match"):
        package_run(run_dir, dest=memory_root)
    assert main(["package", str(run_dir), "--dest", memory_root]) == 1


def test_cli_packages_and_checks(run_dir: Path, memory_root: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["package", str(run_dir), "--dest", memory_root]) == 0
    out = capsys.readouterr().out
    assert "copied and verified" in out and "sha256" in out
    assert main(["package", "--check", f"{memory_root}/{run_dir.name}.zip"]) == 0


@pytest.mark.parametrize("argv, message", [
    ([], "give RUN_DIR"),
    (["RUN", "--check", "x.zip"], "not both"),
    (["{tmp}"], "not a NORA run directory"),
    (["--check", "{tmp}/missing.zip"], "no such archive"),
    (["RUN", "--dest", "nosuchproto://x"], "Protocol not known"),
])
def test_bad_usage_exits_2_with_a_message(run_dir: Path, argv: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.replace("RUN", str(run_dir)).replace("{tmp}", str(run_dir.parent / "nope"))
            for a in argv]
    assert main(["package", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not Path(f"{run_dir}.zip").exists()           # nothing written on bad usage
