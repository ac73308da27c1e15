"""PPO on a vectorized gymnasium env, with every bit of state needed to resume exactly.

Randomness comes from named streams of the run seed and nothing else: ``init`` (weights),
``sample`` (Gumbel noise for actions), ``minibatch`` (shuffles), ``eval_noise``, and the
envs, seeded once at creation (``ppo.train``, and ``ppo.eval`` for fresh evaluation envs).
No global RNG is read or advanced. ``sampler_device="cpu"`` draws the action
noise and takes the argmax on the CPU even when the model is on a GPU, so the sampling
stream is the same on every device; ``"same"`` samples on the model's device (also
deterministic, since Gumbel-max needs no ``torch.multinomial``, but a different stream).

Envs use gymnasium's NEXT_STEP autoreset: the step after an episode ends only resets that
env (its action is ignored, reward 0). Those transitions are excluded from the update, and
the observation they start from is the finished episode's final one, which is exactly what
GAE needs to bootstrap a truncated episode.
"""
from __future__ import annotations

import collections
import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nora.config.schema import TrainConfig
from nora.seams.precision import Precision
from nora.trainers.configs import PPOConfig
from nora.errors import CheckpointError, ConfigError
from nora.seeding import torch_generator
from nora.trainers import ppo_math as pm
from nora.trainers.vec_env import capture_env, make_vec_env, restore_env

STATE_FORMAT = "nora.ppo/1"
_STATE_KEYS = ("format", "env_id", "num_envs", "num_steps", "seed", "iteration_index",
               "env_steps", "base_lr", "model", "optimizer", "scaler", "generators",
               "rollout", "env")


class ActorCritic(nn.Module):
    """CleanRL's separate tanh MLPs for policy and value."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int) -> None:
        super().__init__()

        def mlp(out: int) -> nn.Sequential:
            lin = lambda i, o: nn.utils.skip_init(nn.Linear, i, o)  # noqa: E731 (no global RNG)
            return nn.Sequential(lin(obs_dim, hidden), nn.Tanh(), lin(hidden, hidden),
                                 nn.Tanh(), lin(hidden, out))

        self.actor, self.critic = mlp(n_actions), mlp(1)

    def init_weights(self, generator: torch.Generator) -> None:
        """Orthogonal init (gain sqrt 2; 0.01 for policy logits, 1 for the value head)."""
        for net, head_gain in ((self.actor, 0.01), (self.critic, 1.0)):
            layers = [m for m in net if isinstance(m, nn.Linear)]
            for i, layer in enumerate(layers):
                gain = head_gain if i == len(layers) - 1 else math.sqrt(2)
                nn.init.orthogonal_(layer.weight, gain, generator=generator)
                nn.init.zeros_(layer.bias)

    @staticmethod
    def mlp_fn(net: nn.Sequential) -> Callable[[torch.Tensor], torch.Tensor]:
        """``net`` as a plain function of its current parameters: half the call overhead.

        Falls back to the module itself if its layers were changed (e.g. dropout injected).
        """
        if [type(m) for m in net] != [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]:
            return net
        (w0, b0), (w1, b1), (w2, b2) = [(m.weight, m.bias) for m in net[::2]]
        return lambda x: F.linear(torch.tanh(F.linear(torch.tanh(F.linear(x, w0, b0)), w1, b1)),
                                  w2, b2)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mlp_fn(self.actor)(obs), self.mlp_fn(self.critic)(obs).squeeze(-1)


class PPOLearner:
    """One PPO run: ``iteration()`` collects ``num_steps x num_envs`` steps and updates.

    ``set_lr`` changes the *base* learning rate; the schedule keeps scaling it, so the
    effective rate at iteration ``i`` is ``base_lr * schedule(i)`` (the ``lr`` metric).
    """

    def __init__(self, ppo: PPOConfig, train: TrainConfig, *, seed: int,
                 device: torch.device) -> None:
        self.ppo, self.train, self.seed = ppo, train, int(seed)
        self.device = torch.device(device)
        self._sampler_device = torch.device("cpu") if ppo.sampler_device == "cpu" else self.device
        self.envs, first_obs = make_vec_env(ppo.env_id, ppo.num_envs, seed=self.seed,
                                            stream="ppo.train")
        self._obs_dim = int(np.prod(self.envs.single_observation_space.shape))
        self._n_actions = int(self.envs.single_action_space.n)
        self.model = ActorCritic(self._obs_dim, self._n_actions, ppo.hidden)
        self.model.init_weights(torch_generator(self.seed, "ppo", "init"))
        self.model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=train.lr, eps=1e-5,
                                          weight_decay=train.weight_decay,
                                          fused=self.device.type in ("cpu", "cuda"))
        self._amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        fp16 = train.amp and self._amp_dtype is torch.float16
        self.precision = Precision(self.device.type, train.amp, self._amp_dtype, scaler=fp16)
        self._g_sample = torch_generator(self.seed, "ppo", "sample",
                                         device=str(self._sampler_device))
        self._g_minibatch = torch_generator(self.seed, "ppo", "minibatch")
        self.iteration_index, self.env_steps, self.base_lr = 0, 0, float(train.lr)
        # Hooks for the run that hosts this learner (see nora.trainers.ppo): a look after each
        # backward (before the optimizer step), and another source of minibatch index order.
        self.step_hook: Callable[[], None] | None = None
        self.minibatch_order: Callable[[torch.Tensor, int], Any] | None = None
        t, n = ppo.num_steps, ppo.num_envs
        self._obs = torch.zeros(t, n, self._obs_dim, device=self.device)
        self._actions = torch.zeros(t, n, dtype=torch.long, device=self._sampler_device)
        self._rewards = np.zeros((t, n), np.float32)
        self._terminated, self._truncated, self._is_reset = (np.zeros((t, n), np.bool_)
                                                             for _ in range(3))
        self._next_obs = self._to_obs(first_obs)
        self._next_is_reset = np.zeros(n, np.bool_)
        self._episode_return = np.zeros(n, np.float64)
        self._recent_returns: collections.deque[float] = collections.deque(maxlen=100)

    def _to_obs(self, obs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(obs, np.float32).reshape(len(obs), -1)).to(self.device)

    def set_lr(self, lr: float) -> None:
        """Set the base learning rate from now on; the schedule still scales it."""
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ConfigError(f"train.lr: expected a finite positive float, got {lr!r}")
        self.base_lr = float(lr)
        for group in self.optimizer.param_groups:
            group["lr"] = self._scheduled_lr()

    def _scheduled_lr(self) -> float:
        return pm.schedule(self.train.lr_schedule, self.base_lr, 0.0, self.iteration_index,
                           self.train.epochs)

    def iteration(self) -> dict[str, float]:
        """Collect one rollout, update on it, and return the iteration's metrics."""
        i, epochs = self.iteration_index, self.train.epochs
        clip_eps = pm.schedule("linear", self.ppo.clip_start, self.ppo.clip_end, i, epochs)
        ent_coef = pm.schedule("linear", self.ppo.ent_start, self.ppo.ent_end, i, epochs)
        lr = self._scheduled_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self._rollout()
        stats = self._update(clip_eps, ent_coef)
        self.iteration_index += 1
        recent = list(self._recent_returns)
        return {**stats, "clip_eps": clip_eps, "ent_coef": ent_coef, "lr": lr,
                "env_steps": self.env_steps,
                "mean_return": float(np.mean(recent)) if recent else math.nan}

    def _rollout(self) -> None:
        """Act ``num_steps`` times in every env with per-step work kept to the policy MLP."""
        actor, to_cpu = self.model.mlp_fn(self.model.actor), self._sampler_device != self.device
        noise = pm.gumbel_noise(torch.rand(*self._actions.shape, self._n_actions,
                                           generator=self._g_sample, device=self._sampler_device))
        next_obs, next_is_reset, ep_ret = self._next_obs, self._next_is_reset, self._episode_return
        with torch.inference_mode():
            for t in range(self.ppo.num_steps):
                self._obs[t].copy_(next_obs)
                self._is_reset[t] = next_is_reset
                logits = actor(next_obs)
                action = pm.sample_gumbel_max(logits.cpu() if to_cpu else logits, noise[t])
                self._actions[t] = action
                obs, reward, term, trunc, _ = self.envs.step(action.cpu().numpy())
                self._rewards[t], self._terminated[t], self._truncated[t] = reward, term, trunc
                ep_ret += reward
                next_is_reset = term | trunc
                if next_is_reset.any():
                    self._recent_returns.extend(ep_ret[next_is_reset].tolist())
                    ep_ret[next_is_reset] = 0.0
                next_obs = self._to_obs(obs)
        self._next_obs, self._next_is_reset = next_obs.clone(), next_is_reset
        self.env_steps += self.ppo.num_steps * self.ppo.num_envs

    def _update(self, clip_eps: float, ent_coef: float) -> dict[str, float]:
        """GAE over the rollout, then ``update_epochs`` shuffled passes of minibatches."""
        ppo, dev = self.ppo, self.device
        precision = self.precision
        critic = ActorCritic.mlp_fn(self.model.critic)
        with torch.no_grad(), precision.autocast():
            obs = self._obs.reshape(-1, self._obs_dim)
            actions = self._actions.to(dev).reshape(-1)
            logits, values = self.model(obs)
            old_logp = pm.logprob(logits.float(), actions)
            values = values.float().reshape(self._obs.shape[:2])
            next_values = torch.cat([values[1:], critic(self._next_obs).float().T])
            as_t = lambda a: torch.from_numpy(a).to(dev)  # noqa: E731
            advantages, returns = pm.compute_gae(
                as_t(self._rewards), values, next_values, as_t(self._terminated),
                as_t(self._truncated), gamma=ppo.gamma, gae_lambda=ppo.gae_lambda)
            # NEXT_STEP reset transitions (action ignored, reward 0) are not experience
            valid = torch.from_numpy(~self._is_reset.reshape(-1)).nonzero().squeeze(-1).to(dev)
            b_obs, b_actions, b_logprobs = obs[valid], actions[valid], old_logp[valid]
            b_advantages, b_returns = advantages.reshape(-1)[valid], returns.reshape(-1)[valid]
        n, mb = len(valid), self.train.batch_size
        totals, count = torch.zeros(6, device=dev), 0
        params = list(self.model.parameters())
        for _ in range(ppo.update_epochs):
            perm = torch.randperm(n, generator=self._g_minibatch)
            order = (self.minibatch_order(perm, mb) if self.minibatch_order
                     else (perm[s:s + mb] for s in range(0, n, mb)))
            for idx in order:
                idx = idx.to(dev)
                with precision.autocast():
                    new_logits, new_values = self.model(b_obs[idx])
                new_logits, new_values = new_logits.float(), new_values.float()
                logratio = pm.logprob(new_logits, b_actions[idx]) - b_logprobs[idx]
                mb_adv = pm.normalize(b_advantages[idx]) if ppo.norm_adv else b_advantages[idx]
                pg_loss = pm.clipped_policy_loss(logratio, mb_adv, clip_eps)
                v_loss = pm.value_loss(new_values, b_returns[idx])
                entropy = pm.entropy(new_logits).mean()
                loss = pg_loss - ent_coef * entropy + ppo.vf_coef * v_loss
                self.optimizer.zero_grad(set_to_none=True)
                precision.backward(loss, self.model.named_parameters())
                if self.step_hook is not None:
                    self.step_hook()
                precision.step(self.optimizer, clip=(params, ppo.max_grad_norm))
                with torch.no_grad():
                    totals += torch.stack([loss, pg_loss, v_loss, entropy, pm.approx_kl(logratio),
                                           pm.clip_fraction(logratio, clip_eps)])
                count += 1
        means = (totals / max(count, 1)).tolist()
        return dict(zip(("loss", "pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac"), means))

    @torch.no_grad()
    def evaluate_greedy(self, episodes: int, *, obs_noise_std: float = 0.0,
                        generator: torch.Generator | None = None,
                        transform: Callable[[torch.Tensor], torch.Tensor] | None = None
                        ) -> list[float]:
        """Returns of ``episodes`` argmax-policy episodes on fresh envs seeded from the run seed.

        Observation noise, if any, comes from its own generator re-seeded on every call (or
        from ``generator``), so the same weights always give the same list. Training state
        is not touched.
        """
        if episodes <= 0:
            return []
        env, obs = make_vec_env(self.ppo.env_id, episodes, seed=self.seed, stream="ppo.eval")
        g = generator if generator is not None else torch_generator(self.seed, "ppo", "eval_noise")
        returns, finished = np.zeros(episodes, np.float64), np.zeros(episodes, np.bool_)
        was_training = self.model.training
        self.model.eval()
        try:
            while not finished.all():
                x = torch.from_numpy(np.asarray(obs, np.float32).reshape(episodes, -1))
                if obs_noise_std > 0:
                    x = x + obs_noise_std * torch.randn(x.shape, generator=g)
                if transform is not None:  # the host's eval pipeline (nora.trainers.ppo)
                    x = transform(x)
                action = self.model.actor(x.to(self.device)).argmax(-1).cpu().numpy()
                obs, reward, term, trunc, _ = env.step(action)
                returns += np.where(finished, 0.0, reward)
                finished |= term | trunc
        finally:
            self.model.train(was_training)
            env.close()
        return returns.tolist()

    def state_dict(self) -> dict[str, Any]:
        """A snapshot of everything a fresh process needs to continue bit for bit.

        Holds only tensors, ints, floats, str, lists and dicts, so it loads with
        ``torch.load(weights_only=True)``.
        """
        return {
            "format": STATE_FORMAT, "env_id": self.ppo.env_id, "num_envs": self.ppo.num_envs,
            "num_steps": self.ppo.num_steps, "seed": self.seed,
            "iteration_index": self.iteration_index, "env_steps": self.env_steps,
            "base_lr": self.base_lr,
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "scaler": self.precision.state_dict(),
            "generators": {"sample": self._g_sample.get_state(),
                           "minibatch": self._g_minibatch.get_state()},
            "rollout": {"next_obs": self._next_obs.cpu().clone(),
                        "next_is_reset": torch.from_numpy(self._next_is_reset.copy()),
                        "episode_return": torch.from_numpy(self._episode_return.copy()),
                        "recent_returns": list(self._recent_returns)},
            "env": capture_env(self.envs),
        }

    def load_state_dict(self, state: dict[str, Any], *, strict: bool = True) -> list[str]:
        """Restore a ``state_dict()``; raises ``CheckpointError`` naming every problem.

        ``strict=False`` skips missing sections, which keep this learner's fresh values (what
        an incomplete checkpoint does to a real resume), and returns their names.
        """
        missing = [k for k in _STATE_KEYS if k not in state]
        problems = [f"key {k!r} missing" for k in missing] if strict else []
        for key, want in (("format", STATE_FORMAT), ("env_id", self.ppo.env_id),
                          ("num_envs", self.ppo.num_envs), ("num_steps", self.ppo.num_steps),
                          ("seed", self.seed)):
            if key in state and state[key] != want:
                problems.append(f"{key} is {state[key]!r}, this learner has {want!r}")
        if problems:
            raise CheckpointError("PPO state does not fit this learner: " + "; ".join(problems))
        if "model" in state:
            self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.precision.load_state_dict(state["scaler"])
        if "generators" in state:
            self._g_sample.set_state(state["generators"]["sample"])
            self._g_minibatch.set_state(state["generators"]["minibatch"])
        self.iteration_index = state.get("iteration_index", self.iteration_index)
        self.env_steps = state.get("env_steps", self.env_steps)
        self.base_lr = float(state.get("base_lr", self.base_lr))
        if "rollout" in state:
            rollout = state["rollout"]
            self._next_obs = rollout["next_obs"].to(self.device, torch.float32)
            self._next_is_reset = rollout["next_is_reset"].numpy().copy()
            self._episode_return = rollout["episode_return"].numpy().copy()
            self._recent_returns.clear()
            self._recent_returns.extend(float(r) for r in rollout["recent_returns"])
        if "env" in state:
            restore_env(self.envs, state["env"])
        return missing
