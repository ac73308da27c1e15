"""Bad overrides never escape as anything but one ConfigError line naming the value."""
from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nora
from nora.cli import main as cli_main
from nora.config.compose import group_choices
from nora.config.messages import short

LEAVES = ["seed", "device", "resume_from", "train.lr", "train.epochs", "train.max_steps",
          "trainer.train_subset", "trainer.name", "repro.torch_threads", "ddp.world_size",
          "violation.at_fraction", "mode.name", "regime.max_retries", "replay_changes"]
KEYS = LEAVES + ["modes", "mode", "regime", "violation", "trainer", "hydra/launcher",
                 "hydra.run.dir", "hydra.sweep.dir", "hydra.job.name", "train", "", " ",
                 "nope", "train.nope", "a.b.c", "é", "trainer.env_id"]
HOSTILE = ["${nope}", "${oc.env:X}", "${oc.env:NORA_FUZZ_UNSET_VAR}", "${train.lr}", "${",
           "}", "[1]", "[1,2", "{a:1}", "{", "a" * 5000, "", " ", "null", "NULL", "true",
           "1,2", "int(3)", "choice(1,2)", "range(1,3)", "???", "'quoted'", '"x', "\x00",
           "é", "日本", "🙂", "-1", "0", "1e-3", "inf", "nan", "1e309", "9" * 400, "cuda:9",
           "strict", "norm_aware", "ppo", "../../etc/passwd", "/dev/null", "\\", "a=b", "@"]
PREFIXES = ["", "", "", "+", "++", "~"]

overrides = st.one_of(
    st.text(max_size=60),
    st.builds(lambda p, k, v: f"{p}{k}={v}", st.sampled_from(PREFIXES), st.sampled_from(KEYS),
              st.one_of(st.sampled_from(HOSTILE), st.text(max_size=30),
                        st.integers(-10**30, 10**30).map(str),
                        st.floats(allow_nan=True).map(str))),
    st.builds(lambda p, k: f"{p}{k}", st.sampled_from(PREFIXES), st.sampled_from(KEYS)),
    st.builds(lambda g, c: f"{g}={c}", st.sampled_from(["modes", "mode", "regime", "violation",
                                                         "trainer"]),
              st.sampled_from(group_choices("violation") + group_choices("modes")
                              + group_choices("regime") + group_choices("trainer"))),
)
override_lists = st.lists(overrides, max_size=5)


def names_a_value(message: str, given: list[str]) -> bool:
    """The message names one of the overrides: whole, its key, or its value."""
    for ov in given:
        key, _, value = ov.partition("=")
        candidates = [short(ov), short(value), key.lstrip("+~").strip(), value.strip()]
        if any(c and c in message for c in candidates):
            return True
    return False


def check_clean(given: list[str]) -> None:
    try:
        nora.load_config(given)
    except nora.ConfigError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg and len(msg) < 2000, msg
        assert names_a_value(msg, given), (given, msg)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(given=override_lists)
def test_any_override_list_gives_a_config_or_one_clean_config_error(given):
    check_clean(given)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(given=override_lists)
def test_fuzz_10000_override_lists(given):
    check_clean(given)


@pytest.mark.parametrize("given, needles", [
    (["seed=${nope}"], ["seed=${nope}", "nope"]),
    (["seed=${oc.env:NORA_FUZZ_UNSET_VAR}"], ["NORA_FUZZ_UNSET_VAR"]),
    (["+=cpu"], ["'+=cpu'", "empty key"]),
    ([f"hydra/launcher={'a' * 5000}"], ["hydra/launcher=", "limit is 1000"]),
    ([f"hydra/launcher={'a' * 500}"], ["hydra/launcher=", "chars)", "basic, submitit_local"]),
    (["hydra/launcher=[1]"], ["hydra/launcher=[1]"]),
    (["hydra.run.dir="], ["hydra.run.dir", "must not be empty"]),
    (["hydra.sweep.dir=''"], ["hydra.sweep.dir", "must not be empty"]),
    (["seed=\x00"], ["seed=\\x00"]),
    (["+seed=3"], ["+seed=3", "already"]),
    (["trainer.foo=1"], ["trainer.foo", "'1'", "channels"]),
    (["train.lr=abc", "train.epochs=-1"], ["train.lr = 'abc'", "train.epochs = -1"]),
    (["mode=nope"], ["'nope'", "agentic, norm_aware, pipeline"]),
])
def test_known_bad_inputs_name_the_value(given, needles):
    with pytest.raises(nora.ConfigError) as info:
        nora.load_config(given)
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg


def test_mode_is_an_alias_of_the_modes_group():
    for name in group_choices("modes"):
        assert nora.load_config([f"mode={name}"]) == nora.load_config([f"modes={name}"])
    assert nora.load_config(["mode.plateau_patience=5"]).mode.plateau_patience == 5


def test_non_string_overrides_are_config_errors():
    for bad in ("seed=1", [1], [None], [b"seed=1"]):
        with pytest.raises(nora.ConfigError):
            nora.load_config(bad)


@pytest.mark.parametrize("argv", [["seed=${nope}"], ["+=cpu"], ["hydra.run.dir="],
                                  ["hydra/launcher=[1]"], ["mode=nope"]])
def test_cli_answers_bad_overrides_with_one_line_and_exit_2(argv, capsys, tmp_path,
                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nora: error: ") and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir()), "nothing may be left behind"


def test_cli_process_prints_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nora", "train", "seed=${oc.env:X_UNSET}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(
                              __import__("pathlib").Path(nora.__file__).parent.parent)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("nora: error: ") and proc.stderr.count("\n") == 1
    assert "X_UNSET" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_accepts_the_mode_alias(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = cli_main(["train", "mode=pipeline", "train.epochs=1", "trainer.train_subset=64",
                     f"hydra.run.dir={run_dir}"])
    assert code == 0, capsys.readouterr().err
    manifest = __import__("json").loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["mode"]["name"] == "pipeline"


def test_an_unknown_key_named_by_part_of_its_path_names_its_override():
    """Found by the fuzz above: ``+a.b.c=1`` then ``~a.b.c`` leaves an unknown ``a``."""
    check_clean(["+a.b.c=${n}", "a.b.c=", "~a.b.c="])
    with pytest.raises(nora.ConfigError, match=r"a: unknown key .*\(from override '\+a\.b\.c=1'\)"):
        nora.load_config(["+a.b.c=1", "a.b.c=", "~a.b.c="])
