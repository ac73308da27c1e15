"""PPOLearner: determinism, resume, evaluation, and that it actually learns."""
from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nora.config.schema import TrainConfig
from nora.trainers.configs import PPOConfig
from nora.errors import CheckpointError, ConfigError
from nora.hashing import fingerprint
from nora.trainers.ppo_engine import PPOLearner, capture_env, make_vec_env, restore_env

ROOT = Path(__file__).resolve().parents[1]
PRESET = yaml.safe_load((ROOT / "nora/conf/trainer/ppo.yaml").read_text())
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def configs(**overrides) -> tuple[PPOConfig, TrainConfig]:
    """The preset, shrunk for speed; ``train_*`` keys go to TrainConfig."""
    ppo = {**PRESET["trainer"], "num_envs": 4, "num_steps": 32}
    train = {**PRESET["train"], "epochs": 10, "batch_size": 32}
    for key, value in overrides.items():
        if key.startswith("train_"):
            train[key[len("train_"):]] = value
        else:
            ppo[key] = value
    return PPOConfig(**ppo), TrainConfig(**train)


def learner(seed: int = 0, **overrides) -> PPOLearner:
    ppo, train = configs(**overrides)
    return PPOLearner(ppo, train, seed=seed, device=CPU)


def run(lrn: PPOLearner, n: int) -> list[dict[str, float]]:
    return [lrn.iteration() for _ in range(n)]


def same(a: list[dict[str, float]], b: list[dict[str, float]]) -> bool:
    """Metric lists equal, nan equal to nan."""
    return [{k: repr(v) for k, v in m.items()} for m in a] == \
           [{k: repr(v) for k, v in m.items()} for m in b]


def test_iteration_reports_the_contract_metrics():
    lrn = learner()
    m = lrn.iteration()
    assert {"loss", "pg_loss", "v_loss", "entropy", "approx_kl", "clip_eps", "ent_coef", "lr",
            "env_steps", "mean_return"} <= set(m)
    assert m["env_steps"] == 4 * 32 and lrn.iteration_index == 1
    assert m["lr"] == PRESET["train"]["lr"] and m["clip_eps"] == PRESET["trainer"]["clip_start"]
    assert all(math.isfinite(v) for k, v in m.items() if k != "mean_return")


def test_same_seed_is_bit_identical():
    a, b = learner(seed=3), learner(seed=3)
    assert same(run(a, 3), run(b, 3))
    assert fingerprint(a.state_dict()) == fingerprint(b.state_dict())


def test_different_seeds_differ():
    a, b = learner(seed=0), learner(seed=1)
    run(a, 1), run(b, 1)
    assert fingerprint(a.model) != fingerprint(b.model)
    assert fingerprint(a.state_dict()["env"]) != fingerprint(b.state_dict()["env"])


def test_global_rngs_are_neither_read_nor_advanced():
    a = learner(seed=5)
    ref = run(a, 3)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    b = learner(seed=5)
    got = [b.iteration()]
    after = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    assert before[0] == after[0] and np.array_equal(before[1], after[1])
    assert torch.equal(before[2], after[2])
    for perturb in (11, 12):  # scramble every global RNG between iterations
        random.seed(perturb), np.random.seed(perturb), torch.manual_seed(perturb)
        random.random(), np.random.rand(7), torch.rand(5)
        got.append(b.iteration())
    assert same(ref, got)
    assert fingerprint(a.state_dict()) == fingerprint(b.state_dict())


def test_learning_raises_mean_return():
    lrn = PPOLearner(PPOConfig(**PRESET["trainer"]), TrainConfig(**PRESET["train"]), seed=0,
                     device=CPU)
    first = lrn.iteration()["mean_return"]
    for _ in range(14):
        last = lrn.iteration()["mean_return"]
    assert last > 1.5 * first, (first, last)


# native and sync vector envs; Acrobot's 500-step time limit falls on an iteration boundary
@pytest.mark.parametrize("env_id,num_steps", [("CartPole-v1", 8), ("Acrobot-v1", 50)])
def test_resume_through_weights_only_file_equals_uninterrupted(tmp_path, env_id, num_steps):
    cfg = {"env_id": env_id, "num_steps": num_steps, "train_epochs": 100}
    first, k = learner(seed=7, **cfg), 0
    while True:  # stop where the next step autoresets an env: the hardest point to resume
        first.iteration()
        k += 1
        if first.state_dict()["rollout"]["next_is_reset"].any():
            break
        assert k < 100, "no episode ended at an iteration boundary"
    torch.save(first.state_dict(), tmp_path / "ppo.pt")
    del first
    resumed = learner(seed=7, **cfg)
    resumed.load_state_dict(torch.load(tmp_path / "ppo.pt", weights_only=True))
    whole = learner(seed=7, **cfg)
    ref = run(whole, k + 3)
    assert same(ref[k:], run(resumed, 3))
    assert fingerprint(whole.state_dict()) == fingerprint(resumed.state_dict())


def test_resume_in_a_fresh_process_equals_uninterrupted(tmp_path):
    """Catches state that only lives in the process (hash order, module caches)."""
    first = learner(seed=9)
    run(first, 2)
    torch.save(first.state_dict(), tmp_path / "ppo.pt")
    ppo, train = configs()
    script = f"""
import torch
from nora.config.schema import TrainConfig
from nora.trainers.configs import PPOConfig
from nora.hashing import fingerprint
from nora.trainers.ppo_engine import PPOLearner
torch.set_num_threads(1)
lrn = PPOLearner(PPOConfig(**{ppo.model_dump()!r}), TrainConfig(**{train.model_dump()!r}),
                 seed=9, device=torch.device("cpu"))
lrn.load_state_dict(torch.load({str(tmp_path / "ppo.pt")!r}, weights_only=True))
for _ in range(2):
    lrn.iteration()
print(fingerprint(lrn.state_dict()))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=ROOT,
                         env={"PYTHONHASHSEED": "123", "PYTHONPATH": str(ROOT)})
    whole = learner(seed=9)
    run(whole, 4)
    assert out.stdout.strip().splitlines()[-1] == fingerprint(whole.state_dict())


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "MountainCar-v0"])
def test_env_state_roundtrip_across_an_autoreset(tmp_path, env_id):
    env, _ = make_vec_env(env_id, 3, seed=0, stream="t")
    rng = np.random.default_rng(0)
    for _ in range(1000):  # stop right after an episode ended: the next step autoresets
        *_, term, trunc, _ = env.step(rng.integers(0, env.single_action_space.n, 3))
        if (term | trunc).any():
            break
    torch.save(capture_env(env), tmp_path / "env.pt")
    twin, _ = make_vec_env(env_id, 3, seed=99, stream="other")
    restore_env(twin, torch.load(tmp_path / "env.pt", weights_only=True))
    for _ in range(300):
        action = rng.integers(0, env.single_action_space.n, 3)
        for x, y in zip(env.step(action)[:4], twin.step(action)[:4]):
            assert np.array_equal(x, y)


def test_load_rejects_a_foreign_state_naming_every_problem():
    state = learner(seed=1).state_dict()
    del state["optimizer"]
    with pytest.raises(CheckpointError) as err:
        learner(seed=0).load_state_dict(state)
    assert "'optimizer' missing" in str(err.value) and "seed is 1" in str(err.value)


@pytest.mark.parametrize("drop", ["optimizer", "generators", "env", "rollout"])
def test_incomplete_state_loads_only_when_asked_and_then_diverges(drop):
    whole, first = learner(seed=6), learner(seed=6)
    ref = run(whole, 4)
    run(first, 2)
    state = first.state_dict()
    del state[drop]
    resumed = learner(seed=6)
    with pytest.raises(CheckpointError, match=f"'{drop}' missing"):
        resumed.load_state_dict(state)
    assert resumed.load_state_dict(state, strict=False) == [drop]
    got = run(resumed, 2)
    diverged = not same(ref[2:], got) or \
        fingerprint(whole.state_dict()) != fingerprint(resumed.state_dict())
    assert diverged, f"resume without {drop!r} still equals the uninterrupted run"


def test_set_lr_changes_the_base_and_survives_resume():
    lrn = learner(train_lr_schedule="linear", train_epochs=4)
    lrn.iteration()
    lrn.set_lr(1e-3)
    assert lrn.iteration()["lr"] == pytest.approx(1e-3 * 0.75)  # iteration 1 of 4
    twin = learner(train_lr_schedule="linear", train_epochs=4)
    twin.load_state_dict(lrn.state_dict())
    assert twin.iteration()["lr"] == pytest.approx(1e-3 * 0.5)
    with pytest.raises(ConfigError, match="train.lr"):
        lrn.set_lr(-1.0)


def test_greedy_eval_is_identical_on_rerun_and_leaves_training_alone():
    lrn = learner(seed=2)
    run(lrn, 2)
    before = fingerprint(lrn.state_dict())
    scores = lrn.evaluate_greedy(4)
    assert len(scores) == 4 and scores == lrn.evaluate_greedy(4)
    assert fingerprint(lrn.state_dict()) == before
    twin = learner(seed=2)
    run(twin, 2)
    assert twin.evaluate_greedy(4) == scores


def test_observation_noise_changes_eval_but_stays_reproducible():
    lrn = learner(seed=4)
    run(lrn, 3)
    clean = lrn.evaluate_greedy(5)
    noisy = lrn.evaluate_greedy(5, obs_noise_std=0.5)
    assert noisy != clean
    assert lrn.evaluate_greedy(5, obs_noise_std=0.5) == noisy


def test_amp_runs_finite():
    m = learner(train_amp=True).iteration()
    assert all(math.isfinite(v) for k, v in m.items() if k != "mean_return")


@pytest.mark.parametrize("env_id,match", [("NoSuchEnv-v0", "not a registered"),
                                          ("Pendulum-v1", "Discrete")])
def test_rejects_unusable_envs(env_id, match):
    with pytest.raises(ConfigError, match=match):
        learner(env_id=env_id)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_with_cpu_sampler_is_bit_identical():
    ppo, train = configs()
    a, b = (PPOLearner(ppo, train, seed=0, device=torch.device("cuda")) for _ in range(2))
    assert same(run(a, 3), run(b, 3))
    assert fingerprint(a.state_dict()) == fingerprint(b.state_dict())


@pytest.mark.slow
def test_cartpole_reaches_195_within_100k_steps():
    lrn = PPOLearner(PPOConfig(**PRESET["trainer"]), TrainConfig(**PRESET["train"]), seed=0,
                     device=CPU)
    while lrn.env_steps < 100_000:
        if lrn.iteration()["mean_return"] >= 195:
            break
    else:
        pytest.fail(f"mean return of the last 100 episodes stayed below 195 for "
                    f"{lrn.env_steps} env steps")
