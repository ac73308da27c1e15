"""Malformed run directories given to ``replay``, ``compare`` and ``report``: a NoraError and,
on the command line, exit 2 with one line; never a traceback, never a skipped garbage line.

The property tests start from a real run directory and break one file in one way (empty,
binary, wrong JSON type, a key dropped, a field of the wrong type, a bad JSONL line ...).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nora
from nora.cli import main
from nora.errors import NoraError
from nora.hashing import tensor_hashes
from nora.records import write_json
from nora.reporting.collect import collect

TINY = ["train.epochs=1", "trainer.train_subset=64", "train.batch_size=32",
        "violation=missing_seed", "regime=balanced"]
FILES = {"manifest": "manifest.json", "metrics": "metrics.jsonl",
         "decisions": "norms/agent_decisions.jsonl", "repro": "norms/reproducibility_metrics.json",
         "tensors": "state/tensors.json", "state": "state/final.pt"}


class WouldTrain(Exception):
    """Replay accepted the manifest and would start training (stubbed to keep tests fast)."""


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("base") / "run"
    nora.train(nora.load_config(TINY), run_dir=run)
    state = torch.load(run / "state" / "final.pt", weights_only=True)
    small = dict(list(state.items())[:6])          # a few tensors keep each load quick
    torch.save(small, run / "state" / "final.pt")
    write_json(run / "state" / "tensors.json", {"step": 2, "hashes": tensor_hashes(small)})
    return run


def _clone(base: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(base, dest, ignore=shutil.ignore_patterns("checkpoints", "replays"))
    return dest


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3), max_leaves=6)


def _paths(obj, prefix=()):
    """Every key path into nested dicts (and the first item of lists)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list) and obj:
        yield (*prefix, 0)
        yield from _paths(obj[0], (*prefix, 0))


def _set(obj, path, value, drop=False):
    for p in path[:-1]:
        obj = obj[p]
    if drop:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


@st.composite
def damage(draw, base_dir: Path):
    """(file key, how, function that damages a run dir in that way)."""
    key = draw(st.sampled_from(sorted(FILES)))
    path = base_dir / FILES[key]
    raw = path.read_bytes()
    how = draw(st.sampled_from(["empty", "binary", "truncate", "directory"] + (
        ["wrong_top", "drop", "retype", "deep", "huge_int"] if key in ("manifest", "repro",
                                                                         "tensors") else
        ["bad_line", "retype_line"] if key in ("metrics", "decisions") else ["torch_list"])))
    data = None
    if how == "binary":
        data = draw(st.binary(min_size=1, max_size=64))
    elif how == "truncate":
        data = raw[: draw(st.integers(0, max(0, len(raw) - 2)))]
    elif how == "wrong_top":
        data = json.dumps(draw(json_values.filter(lambda v: not isinstance(v, dict)))).encode()
    elif how in ("drop", "retype"):
        obj = json.loads(raw)
        paths = list(_paths(obj))
        target = draw(st.sampled_from(paths))
        _set(obj, target, draw(json_values), drop=how == "drop")
        data, how = json.dumps(obj).encode(), f"{how} {'.'.join(map(str, target))}"
    elif how == "deep":
        data = b"[" * 100_000 + b"]" * 100_000
    elif how == "huge_int":
        data = b'{"status": "done", "config": {"seed": ' + b"9" * 5000 + b"}}"
    elif how == "bad_line":
        line = draw(st.one_of(json_values.filter(lambda v: not isinstance(v, dict)).map(
            json.dumps), st.text(min_size=1, max_size=20).filter(lambda t: t.strip()),
            st.just('{"kind": "step", "step": "3", "loss": 1.0}')))
        lines = raw.decode().splitlines()
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, line.replace("\n", " "))
        data, how = ("\n".join(lines) + "\n").encode(), f"bad_line {line[:30]!r} at {at}"
    elif how == "retype_line":
        lines = raw.decode().splitlines()
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        rec = json.loads(lines[i]) if lines else {}
        field = draw(st.sampled_from(sorted(rec) or ["step"]))
        rec[field] = draw(json_values)
        lines[i:i + 1] = [json.dumps(rec)]
        data, how = ("\n".join(lines) + "\n").encode(), f"retype_line {i}.{field}"
    elif how == "torch_list":
        buf = io.BytesIO()
        torch.save([1, 2, 3], buf)
        data = buf.getvalue()
    elif how == "empty":
        data = b""

    def apply(run: Path) -> None:
        target = run / FILES[key]
        if how == "directory":
            target.unlink(missing_ok=True)
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    return key, how, apply


@contextlib.contextmanager
def _fast():
    """No training (replay would start one) and no drawing (matplotlib is slow); every
    record the report reads is still read."""
    with mock.patch("nora.replaying.train", side_effect=WouldTrain), \
            mock.patch("nora.reporting.page.learning_curves", return_value=None), \
            mock.patch("nora.reporting.page.decision_timeline", return_value=None):
        yield


def _report_reads(bad: Path) -> None:
    """Everything ``report`` reads (curves and decisions included), without the page."""
    collect([bad])


def _cli(argv: list[str]) -> None:
    """``main(argv)`` must exit 0, 1 or 2, and with 2 print one ``nora: error:`` line."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except WouldTrain:      # replay accepted the manifest
        return
    assert code in (0, 1, 2), (argv[0], code)
    if code == 2:
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nora: error: "), (argv[0], lines)


def check_damaged(base: Path, work: Path, case, *, full_report: bool) -> None:
    """Break one file of a copy of ``base``; every command answers with data or a NoraError
    (the CLI only catches NoraError, so anything else would escape ``main``)."""
    key, how, apply = case
    bad = _clone(base, work / "bad")
    apply(bad)
    try:
        _cli(["compare", str(base), str(bad)])
        _cli(["compare", str(bad), str(base)])
        _cli(["replay", str(bad)])
        try:
            _report_reads(bad)
            refused = False
        except NoraError:
            refused = True
        if refused or full_report:
            _cli(["report", str(bad), "--out", str(work / "out")])
    except Exception as exc:
        raise AssertionError(f"damaged {key} ({how}): {exc!r}") from exc


def _property(max_examples: int):
    def test(base, tmp_path_factory):
        work = tmp_path_factory.mktemp("prop")
        log = os.environ.get("NORA_FUZZ_LOG") if max_examples >= 100 else None

        @settings(max_examples=max_examples, deadline=None, derandomize=max_examples < 100,
                  suppress_health_check=list(HealthCheck))
        @given(case=damage(base))
        def run(case):
            check_damaged(base, work, case, full_report=max_examples < 100)
            if log:                      # progress of a long run, one line per case
                with open(log, "a") as fh:
                    fh.write(f"{case[0]} {case[1][:60]!r} ok\n")

        with _fast():
            run()
    return test


test_damaged_run_dirs_give_a_nora_error_and_one_line = _property(10)
# ``NORA_FUZZ_CASES`` splits the long run over processes (each draws its own cases);
# ``NORA_FUZZ_LOG`` names a file that gets one line per case tried.
test_damaged_run_dirs_10000_cases = pytest.mark.slow(
    _property(int(os.environ.get("NORA_FUZZ_CASES", 10_000))))


# Named kinds, each refused by the commands that read the damaged file (exit 2, one line);
# ``compare`` diffs any JSON object as a manifest, so only a non-object stops it.
KINDS = {
    "empty dir": (None, b"", ["compare", "report", "replay"]),
    "empty manifest": ("manifest.json", b"", ["compare", "report", "replay"]),
    "binary manifest": ("manifest.json", bytes(range(256)), ["compare", "report", "replay"]),
    "manifest is a list": ("manifest.json", b"[1, 2]", ["compare", "report", "replay"]),
    "manifest is a string": ("manifest.json", b'"run"', ["compare", "report", "replay"]),
    "manifest is null": ("manifest.json", b"null", ["compare", "report", "replay"]),
    "manifest without config": ("manifest.json", b'{"status": "done"}',
                                ["report", "replay"]),
    "manifest without status": ("manifest.json", b'{"config": {}}',
                                ["report", "replay"]),
    "config is a list": ("manifest.json", b'{"status": "done", "config": []}',
                         ["report", "replay"]),
    "mode is a string": ("manifest.json", b'{"status": "done", "config": {"mode": "x"}}',
                         ["report", "replay"]),
    "status is a number": ("manifest.json", b'{"status": 3, "config": {}}',
                           ["report", "replay"]),
    "manifest is a folder": ("manifest.json/", b"", ["compare", "report", "replay"]),
    "metrics line is a list": ("metrics.jsonl", b"[1, 2]\n", ["compare", "report"]),
    "metrics step is a string": ("metrics.jsonl", b'{"kind": "step", "step": "3", "loss": 1}\n',
                                 ["compare", "report"]),
    "metrics garbage line": ("metrics.jsonl", b'{"kind": "step", "step": 0, "loss": 1}\nxx\n'
                             b'{"kind": "step", "step": 1, "loss": 1}\n', ["compare", "report"]),
    "metrics binary": ("metrics.jsonl", b"\xff\xfe\x00garbage\n", ["compare", "report"]),
    "metrics record without kind": ("metrics.jsonl", b'{"step": 0}\n', ["compare", "report"]),
    "decision garbage line": ("norms/agent_decisions.jsonl", b"not json\n", ["report"]),
    "decision without action": ("norms/agent_decisions.jsonl", b'{"step": 1}\n', ["report"]),
    "repro metrics is a list": ("norms/reproducibility_metrics.json", b"[]", ["report"]),
    "final state is garbage": ("state/final.pt", b"PK\x03\x04garbage", ["compare"]),
    "tensor hashes are a list": ("state/tensors.json", b'{"hashes": [1]}', ["compare"]),
    "start settings missing": ("manifest.json", None, ["replay"]),
    "epochs 10**12": ("manifest.json", None, ["replay"]),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_named_malformed_run_dirs_exit_2_with_one_line(base, tmp_path, capsys, kind):
    rel, data, commands = KINDS[kind]
    bad = tmp_path / "bad"
    if rel is None:
        bad.mkdir()
    else:
        _clone(base, bad)
        target = bad / rel.rstrip("/")
        if rel.endswith("/"):
            target.unlink()
            target.mkdir()
        elif data is not None:
            target.write_bytes(data)
        else:
            manifest = json.loads(target.read_text())
            if kind == "start settings missing":
                del manifest["seams_at_start"]
            else:
                manifest["config"]["train"]["epochs"] = 10**12
            target.write_text(json.dumps(manifest))
    argvs = {"compare": ["compare", str(base), str(bad)],
             "report": ["report", str(bad), "--out", str(tmp_path / "out")],
             "replay": ["replay", str(bad)]}
    with _fast():
        for command in commands:
            assert main(argvs[command]) == 2, (kind, command)
            err = capsys.readouterr().err.splitlines()
            assert len(err) == 1 and err[0].startswith("nora: error: "), (kind, command, err)
            if kind == "epochs 10**12":
                assert "train.epochs=1000000000000" in err[0] and "--force" in err[0]
            if kind == "metrics garbage line":
                assert "line 2" in err[0]
