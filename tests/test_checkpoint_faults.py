"""Checkpoints survive a kill at every write of a save, and resume trusts the manifest.

A forked child saves checkpoint B over checkpoint A and is killed (``os._exit``, no
cleanup) just before its k-th file operation -- every temp-file write (killed half way
through, leaving a torn file), every fsync and every rename -- for every k. After each kill
the parent loads ``last.pt`` the way a resume does: it must be A or B, whole, and the next
save must work.
"""
from __future__ import annotations

import hashlib
import os
import stat

import pytest
import torch

from nora.checkpoint import load_checkpoint, save_checkpoint, verify_checkpoint
from nora.errors import CheckpointError
from nora.reader import read_manifest
from nora.records import durability, write_json

KILLED = 77


def _state(tag: float) -> dict:
    return {"model": {"w": torch.full((256,), tag)}, "position": {"step": int(tag)}}


def _run_dir(tmp_path):
    run = tmp_path / "run"
    write_json(run / "manifest.json", {"status": "running", "config": {}, "checkpoints": {}})
    return run


class _Faults:
    """Counts file operations; kills the process just before operation ``kill_at``."""

    def __init__(self, kill_at: int | None) -> None:
        self.kill_at, self.ops = kill_at, []

    def hit(self, what: str, torn: bytes | None = None, fh=None) -> None:
        if self.kill_at is not None and len(self.ops) == self.kill_at:
            if torn is not None:                   # die half way through a write
                fh.write(torn[: len(torn) // 2])
                fh.flush()
            os._exit(KILLED)
        self.ops.append(what)


def _patched(monkeypatch, faults: _Faults) -> None:
    real_replace, real_fdopen = os.replace, os.fdopen

    class File:
        def __init__(self, fh):
            self._fh = fh

        def write(self, data):
            faults.hit("write", bytes(data), self._fh)
            return self._fh.write(data)

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._fh.__exit__(*exc)

    monkeypatch.setattr(os, "replace", lambda a, b: (faults.hit("rename"), real_replace(a, b))[1])
    monkeypatch.setattr(os, "fsync", lambda fd: faults.hit("fsync"))   # a kill, not a power
    # loss, is tested here: the call is counted, the (slow) flush to disk is not needed
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: File(real_fdopen(*a, **k)))


def _save_in_child(monkeypatch, path, state, kill_at: int | None) -> int:
    pid = os.fork()
    if pid == 0:                                   # the child: save, maybe die mid-way
        try:
            faults = _Faults(kill_at)
            _patched(monkeypatch, faults)
            save_checkpoint(state, path)
            os._exit(0 if kill_at is None or kill_at >= len(faults.ops) else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _ops_of_one_save(tmp_path, monkeypatch, in_run: bool) -> list[str]:
    run = _run_dir(tmp_path / "count") if in_run else tmp_path / "count"
    save_checkpoint(_state(1.0), run / "checkpoints" / "last.pt")
    faults = _Faults(None)
    with monkeypatch.context() as mp:
        _patched(mp, faults)
        save_checkpoint(_state(2.0), run / "checkpoints" / "last.pt")
    return faults.ops


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "renames-only"])
@pytest.mark.parametrize("in_run", [True, False], ids=["run-dir", "loose"])
def test_a_kill_before_any_file_operation_of_a_save_leaves_a_loadable_checkpoint(
        tmp_path, monkeypatch, in_run, durable):
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    with durability(durable):      # the forked children inherit it
        _kill_before_every_operation(tmp_path, monkeypatch, in_run, durable)


def _kill_before_every_operation(tmp_path, monkeypatch, in_run: bool, durable: bool) -> None:
    ops = _ops_of_one_save(tmp_path, monkeypatch, in_run)
    # in a run: data, manifest (widen, narrow), sidecar: 4 renames, 7 fsyncs (folders too);
    # loose: data, sidecar (widen, narrow): 3 renames, 5 fsyncs; no fsync when not durable
    fsyncs = (7 if in_run else 5) if durable else 0
    assert (ops.count("rename"), ops.count("fsync")) == ((4, fsyncs) if in_run else (3, fsyncs))
    # a kill inside the data file's many writes: at its first, middle and last one is enough
    first_other = next(i for i, op in enumerate(ops) if op != "write")
    data = [i for i, op in enumerate(ops) if op == "write" and i < first_other]
    points = sorted(set(range(len(ops) + 1)) - set(data) | {data[0], data[len(data) // 2],
                                                          data[-1]})
    tags = []
    for k in points:
        run = _run_dir(tmp_path / f"k{k}") if in_run else tmp_path / f"k{k}"
        path = run / "checkpoints" / "last.pt"
        save_checkpoint(_state(1.0), path)
        code = _save_in_child(monkeypatch, path, _state(2.0), kill_at=k)
        assert code == (0 if k == len(ops) else KILLED), (k, ops[k:k + 1])
        loaded = load_checkpoint(path)              # what resume_from does: never refused
        tag = loaded["position"]["step"]
        assert torch.equal(loaded["model"]["w"], torch.full((256,), float(tag)))
        tags.append(tag)
        if in_run:
            assert read_manifest(run)["status"] == "running"                # manifest whole
        save_checkpoint(_state(3.0), path)          # and the next save works
        assert load_checkpoint(path)["position"]["step"] == 3
        assert not list(path.parent.glob(".*.tmp")), "stale temp files of the killed save"
        if in_run:
            assert set(read_manifest(run)["checkpoints"]) == {"checkpoints/last.pt"}
            assert "checkpoints_pending" not in read_manifest(run)
    # the old checkpoint until the rename, the new one from then on: never neither
    assert tags == sorted(tags) and tags[0] == 1 and tags[-1] == 2, tags


@pytest.mark.parametrize("where", ["write", "fsync", "rename"])
def test_an_exception_at_any_operation_leaves_the_old_checkpoint_and_no_temp_file(
        tmp_path, monkeypatch, where):
    run = _run_dir(tmp_path)
    path = run / "checkpoints" / "last.pt"
    save_checkpoint(_state(1.0), path)
    real = {"rename": os.replace, "fsync": os.fsync}

    def boom(*args):
        raise KeyboardInterrupt

    if where == "write":
        monkeypatch.setattr(torch, "save", lambda obj, fh: (fh.write(b"PK\x03"), boom()))
    else:
        monkeypatch.setattr(os, "replace" if where == "rename" else "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_state(2.0), path)
    monkeypatch.setattr(os, "replace", real["rename"])
    monkeypatch.setattr(os, "fsync", real["fsync"])
    assert load_checkpoint(path)["position"]["step"] == 1
    assert not list(path.parent.glob(".*.tmp"))


@pytest.mark.parametrize("in_run", [True, False], ids=["run-dir", "loose"])
def test_a_kill_during_a_save_to_a_new_path_leaves_the_whole_file_or_none(
        tmp_path, monkeypatch, in_run):
    """``step_<n>.pt``: no old file to keep, so the short protocol (two fsyncs fewer); a kill
    leaves the new checkpoint whole, or none, which loading says ("does not exist")."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    root = tmp_path / "count"
    root = _run_dir(root) if in_run else root
    faults = _Faults(None)
    with monkeypatch.context() as mp:
        _patched(mp, faults)
        save_checkpoint(_state(2.0), root / "checkpoints" / "step_2.pt")
    ops = faults.ops
    # in a run: manifest (recorded), data, sidecar: 3 renames, 5 fsyncs (7 over an old
    # file); loose: sidecar, data: 2 renames, 4 fsyncs (5)
    assert (ops.count("rename"), ops.count("fsync")) == ((3, 5) if in_run else (2, 4))
    for k in [k for k, op in enumerate(ops) if op != "write"] + [len(ops)]:
        run = _run_dir(tmp_path / f"k{k}") if in_run else tmp_path / f"k{k}"
        path = run / "checkpoints" / "step_2.pt"
        code = _save_in_child(monkeypatch, path, _state(2.0), kill_at=k)
        assert code == (0 if k == len(ops) else KILLED), (k, ops[k:k + 1])
        if path.exists():
            assert load_checkpoint(path)["position"]["step"] == 2
        else:
            assert k < len(ops)
            if in_run:                              # recorded before the rename, or not at all
                with pytest.raises(CheckpointError, match="does not exist"):
                    load_checkpoint(path)
        save_checkpoint(_state(3.0), path)          # and the next save works
        assert load_checkpoint(path)["position"]["step"] == 3
        assert not list(path.parent.glob(".*.tmp"))


def test_an_altered_checkpoint_with_a_recomputed_sidecar_is_refused_by_the_manifest(tmp_path):
    run = _run_dir(tmp_path)
    path = run / "checkpoints" / "last.pt"
    digest = save_checkpoint(_state(1.0), path)
    assert read_manifest(run)["checkpoints"] == {"checkpoints/last.pt": digest}
    torch.save(_state(5.0), path)                                  # altered ...
    path.with_name("last.pt.sha256").write_text(
        hashlib.sha256(path.read_bytes()).hexdigest() + "\n")      # ... and re-signed
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "manifest" in str(info.value)
    # outside a run directory the sidecar is all there is, and it is honoured
    loose = tmp_path / "loose.pt"
    save_checkpoint(_state(1.0), loose)
    assert verify_checkpoint(loose) == hashlib.sha256(loose.read_bytes()).hexdigest()


def test_a_checkpoint_its_manifest_does_not_know_is_refused(tmp_path):
    run = _run_dir(tmp_path)
    path = run / "checkpoints" / "other.pt"
    save_checkpoint(_state(1.0), path, record_in_manifest=False)
    with pytest.raises(CheckpointError, match="records no checksum for 'checkpoints/other.pt'"):
        load_checkpoint(path)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomically_written_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        run = _run_dir(tmp_path)
        save_checkpoint(_state(1.0), run / "checkpoints" / "last.pt")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    want = stat.S_IMODE(plain.stat().st_mode)
    assert want == 0o666 & ~umask
    for f in (run / "manifest.json", run / "checkpoints" / "last.pt",
              run / "checkpoints" / "last.pt.sha256"):
        assert stat.S_IMODE(f.stat().st_mode) == want, f
