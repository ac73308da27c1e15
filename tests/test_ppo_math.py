"""PPO arithmetic against numbers worked out by hand (the working is in the comments)."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nora.trainers import ppo_math as pm

F64 = torch.float64


def _gae(rewards, values, next_values, terminated=(0, 0, 0), truncated=(0, 0, 0), *,
         gamma=0.9, lam=0.8):
    col = lambda xs, dt=F64: torch.tensor(xs, dtype=dt).unsqueeze(-1)  # noqa: E731  [T, 1]
    adv, ret = pm.compute_gae(col(rewards), col(values), col(next_values),
                              col(terminated, torch.bool), col(truncated, torch.bool),
                              gamma=gamma, gae_lambda=lam)
    return adv.squeeze(-1).tolist(), ret.squeeze(-1).tolist()


# A 3-step rollout, gamma 0.9, lambda 0.8 (gamma * lambda = 0.72):
#   V = [0.5, 0.4, 0.3], V(next) = [0.4, 0.3, 0.2], r = 1 everywhere
#   deltas: 1 + 0.9*0.4 - 0.5 = 0.86,  1 + 0.9*0.3 - 0.4 = 0.87,  1 + 0.9*0.2 - 0.3 = 0.88
R, V, NV = [1.0, 1.0, 1.0], [0.5, 0.4, 0.3], [0.4, 0.3, 0.2]


def test_gae_three_steps_no_episode_end():
    # A2 = 0.88; A1 = 0.87 + 0.72*0.88 = 1.5036; A0 = 0.86 + 0.72*1.5036 = 1.942592
    adv, ret = _gae(R, V, NV)
    assert adv == pytest.approx([1.942592, 1.5036, 0.88], abs=1e-12)
    assert ret == pytest.approx([2.442592, 1.9036, 1.18], abs=1e-12)  # A + V


def test_gae_termination_does_not_bootstrap_and_cuts_the_chain():
    # step 1 terminates: delta1 = 1 - 0.4 = 0.6, A1 = 0.6; A0 = 0.86 + 0.72*0.6 = 1.292
    adv, _ = _gae(R, V, NV, terminated=(0, 1, 0))
    assert adv == pytest.approx([1.292, 0.6, 0.88], abs=1e-12)


def test_gae_truncation_bootstraps_from_final_observation_value():
    # step 1 is cut by a time limit; V(final obs) = 0.3 is still counted:
    # delta1 = 1 + 0.9*0.3 - 0.4 = 0.87, A1 = 0.87 (chain cut); A0 = 0.86 + 0.72*0.87 = 1.4864
    adv, _ = _gae(R, V, NV, truncated=(0, 1, 0))
    assert adv == pytest.approx([1.4864, 0.87, 0.88], abs=1e-12)


def test_gae_termination_on_last_step_ignores_bootstrap_value():
    # delta2 = 1 - 0.3 = 0.7; A1 = 0.87 + 0.72*0.7 = 1.374; A0 = 0.86 + 0.72*1.374 = 1.84928
    adv, _ = _gae(R, V, NV, terminated=(0, 0, 1))
    assert adv == pytest.approx([1.84928, 1.374, 0.7], abs=1e-12)


def test_gae_envs_are_independent_columns():
    a1, _ = _gae(R, V, NV, terminated=(0, 1, 0))
    a2, _ = _gae([0.0, 2.0, 1.0], [0.1, 0.2, 0.3], [0.2, 0.3, 0.4], truncated=(1, 0, 0))
    cols = lambda *xs: torch.tensor(list(zip(*xs)), dtype=F64)  # noqa: E731
    adv, _ = pm.compute_gae(cols(R, [0.0, 2.0, 1.0]), cols(V, [0.1, 0.2, 0.3]),
                            cols(NV, [0.2, 0.3, 0.4]), cols((0, 1, 0), (0, 0, 0)).bool(),
                            cols((0, 0, 0), (1, 0, 0)).bool(), gamma=0.9, gae_lambda=0.8)
    assert adv[:, 0].tolist() == a1 and adv[:, 1].tolist() == a2


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=6), st.floats(0.5, 1.0))
def test_gae_lambda_one_is_discounted_return_minus_value(rewards, gamma):
    t = len(rewards)
    values = [0.1 * i for i in range(t)]
    next_values = values[1:] + [0.7]
    adv, ret = _gae(rewards, values, next_values, [0] * t, [0] * t, gamma=gamma, lam=1.0)
    g, expected = 0.7, []
    for r in reversed(rewards):
        g = r + gamma * g
        expected.append(g)
    assert ret == pytest.approx(expected[::-1], rel=1e-9, abs=1e-9)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=6))
def test_gae_lambda_zero_is_one_step_td_error(rewards):
    t = len(rewards)
    values, next_values = [0.2] * t, [0.3] * t
    adv, _ = _gae(rewards, values, next_values, [0] * t, [0] * t, gamma=0.9, lam=0.0)
    assert adv == pytest.approx([r + 0.9 * 0.3 - 0.2 for r in rewards], abs=1e-12)


def test_clipped_policy_loss_hand_case():
    # ratio 1.5, A=+1: max(-1.5, -1.2) = -1.2   (gain clipped at 1 + eps)
    # ratio 0.5, A=+1: max(-0.5, -0.8) = -0.5   (pessimistic: unclipped)
    # ratio 1.0, A=-2: max(2, 2) = 2
    # ratio 0.5, A=-1: max(0.5, 0.8) = 0.8      (loss clipped at 1 - eps)
    logratio = torch.log(torch.tensor([1.5, 0.5, 1.0, 0.5], dtype=F64))
    adv = torch.tensor([1.0, 1.0, -2.0, -1.0], dtype=F64)
    loss = pm.clipped_policy_loss(logratio, adv, 0.2)
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 2.0 + 0.8) / 4, abs=1e-12)


def test_value_loss_is_half_mse():
    # 0.5 * mean((1-0)^2, (2-4)^2) = 0.5 * 2.5 = 1.25
    assert pm.value_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])).item() == 1.25


def test_entropy_logprob_hand_cases():
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)]], dtype=F64)  # probs .5/.5, .25/.75
    # H = ln 2; H = -(0.25 ln 0.25 + 0.75 ln 0.75) = 0.5623351446...
    assert pm.entropy(logits).tolist() == pytest.approx([math.log(2), 0.5623351446188083])
    assert pm.logprob(logits, torch.tensor([0, 1])).tolist() == pytest.approx(
        [math.log(0.5), math.log(0.75)])


def test_approx_kl_and_clip_fraction():
    # ratios 2 and 1: ((2 - 1) - ln 2 + 0) / 2 = 0.1534264097...
    assert pm.approx_kl(torch.log(torch.tensor([2.0, 1.0], dtype=F64))).item() == pytest.approx(
        (1 - math.log(2)) / 2)
    # ratios 1.5, 0.5 leave [0.8, 1.2]; 1.0 and 1.1 stay: 2 of 4
    lr = torch.log(torch.tensor([1.5, 0.5, 1.0, 1.1]))
    assert pm.clip_fraction(lr, 0.2).item() == 0.5


def test_gumbel_max_takes_argmax_of_perturbed_logits():
    assert pm.sample_gumbel_max(torch.zeros(1, 2), torch.tensor([[0.0, 1.0]])).item() == 1
    assert pm.gumbel_noise(torch.tensor([0.0])).item() == -math.inf  # never chosen


def test_gumbel_max_samples_the_categorical():
    g = torch.Generator().manual_seed(0)
    logits = torch.log(torch.tensor([0.2, 0.8])).expand(40_000, 2)
    actions = pm.sample_gumbel_max(logits, pm.gumbel_noise(torch.rand(40_000, 2, generator=g)))
    assert actions.float().mean().item() == pytest.approx(0.8, abs=0.01)


def test_normalize():
    assert pm.normalize(torch.tensor([1.0, 2.0, 3.0])).tolist() == pytest.approx([-1, 0, 1])
    assert pm.normalize(torch.tensor([5.0])).tolist() == [0.0]


@pytest.mark.parametrize("kind,step,expected", [
    ("constant", 3, 1.0),
    ("linear", 0, 1.0), ("linear", 1, 0.75), ("linear", 4, 0.0), ("linear", 9, 0.0),
    ("cosine", 0, 1.0), ("cosine", 2, 0.5), ("cosine", 4, 0.0),
    ("cosine", 1, 0.5 * (1 + math.cos(math.pi / 4))),  # 0.8535533905...
])
def test_schedule_decays_from_start_to_end(kind, step, expected):
    assert pm.schedule(kind, 1.0, 0.0, step, 4) == pytest.approx(expected, abs=1e-15)


def test_schedule_between_nonzero_ends():
    assert pm.schedule("linear", 0.2, 0.1, 1, 2) == pytest.approx(0.15)


def test_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="'step'"):
        pm.schedule("step", 1.0, 0.0, 0, 4)
    with pytest.raises(ValueError, match="total"):
        pm.schedule("linear", 1.0, 0.0, 0, 0)
