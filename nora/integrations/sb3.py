"""NORA for a stable-baselines3 ``learn``: ``model.learn(n, callback=NoraCallback())``.

Records one step per policy update (``num_timesteps``, the logged loss, a hash of the
rollout it trained on, the RNG hash, the LR, a parameter hash every k updates) and reads
what the algorithm really does: whether it was seeded, the torch thread count (it decides
the bits of the policy's initial weights: ``orthogonal_`` goes through a QR), LR schedule
changes mid-run, non-finite losses or weights after an update, and what ``model.save``
drops for a continued ``learn``: SB3's zip keeps the policy, optimizer and counters but no
RNG state (``load`` re-seeds from the saved seed) and no env state (``load`` resets the
env). In ``balanced`` the callback stores both on the model when ``learn`` ends, so
``model.save`` keeps them, and restores them (and the thread count) when a loaded model's
``learn`` starts: the continued learn is then bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import math
import secrets
import weakref
from pathlib import Path
from typing import Any

import cloudpickle
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv

from nora.integrations import detect
from nora.integrations.recorder import MonitorResult, Recorder
from nora.integrations.rng import capture_rng, restore_rng

__all__ = ["NoraCallback"]

_STATE, _MARK = "_nora_state", "_nora_marker"   # attributes model.save pickles with the model
_HINT = ("learn with NoraCallback(regime='balanced') before model.save, and again in the "
         "continued learn: it saves and restores every RNG state and the env state")
_MODEL_STATE = ("_last_obs", "_last_episode_starts", "_last_original_obs", "_episode_num",
                "ep_info_buffer", "ep_success_buffer")


class NoraCallback(BaseCallback):
    """Records, detectors and the regime's answer for an SB3 ``learn``.

    Args:
        mode, regime, run_dir, hash_every: as for the Lightning callback.
        seed: the seed ``balanced`` sets when the model has none.
    """

    def __init__(self, mode: str = "norm_aware", regime: str = "balanced",
                 run_dir: str | Path | None = None, *, hash_every: int = 1,
                 seed: int = 42, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.rec = Recorder("sb3", mode=mode, regime=regime, run_dir=run_dir,
                            hash_every=hash_every)
        self.seed = seed
        self.result: MonitorResult | None = None
        self._updates = 0
        self._rollout_hash: str | None = None
        self._schedule: Any = None

    @property
    def run_dir(self) -> Path:
        return self.rec.run_dir

    # ------------------------------------------------------------------ start
    def _on_training_start(self) -> None:
        m = self.model
        self.rec.start(seeds={"seed": m.seed}, determinism=detect.determinism(),
                       sb3={"algorithm": type(m).__name__, "n_envs": m.n_envs,
                            "num_timesteps_at_start": m.num_timesteps,
                            "device": str(m.device)})
        self._updates, self._schedule = m._n_updates, m.lr_schedule
        if m.seed is None:
            self.rec.found("missing_seed", event="startup", step=m.num_timesteps,
                           evidence={"model.seed": None},
                           message="the model has no seed: the env's start states, the "
                                   "policy's sampling and (before this call) its initial "
                                   "weights come from OS entropy",
                           hint="pass seed= to the algorithm", fix=self._fix_seed)
        stash, mark = getattr(m, _STATE, None), getattr(m, _MARK, None)
        if m.num_timesteps > 0 and stash is None and not _live(mark, m):
            saved = (mark or {}).get("torch_threads")
            threads = ("" if saved in (None, torch.get_num_threads()) else
                       f"; it was trained with {saved} torch threads and continues with "
                       f"{torch.get_num_threads()}, which changes the bits")
            self.rec.found("checkpoint_incomplete", event="checkpoint", step=m.num_timesteps,
                           evidence={"num_timesteps": m.num_timesteps,
                                     "dropped": ["rng: torch, numpy, python", "env state"],
                                     "torch_threads_saved": saved,
                                     "torch_threads_now": torch.get_num_threads()},
                           message="continuing a loaded model whose save holds no RNG state "
                                   "(load re-seeded from model.seed) and no env state (load "
                                   "reset the env): the continued learn cannot match an "
                                   "uninterrupted one" + threads, hint=_HINT, key="load")
        elif stash is not None and not _live(stash, m):
            if self.rec.regime == "balanced":
                self._restore(stash)
            else:
                self.rec.found("checkpoint_incomplete", event="checkpoint",
                               step=m.num_timesteps, evidence={"restored": False},
                               message="the save holds NORA's RNG and env state but this "
                                       "regime does not restore it", hint=_HINT, key="load")

    def _fix_seed(self) -> bool:
        self.model.set_random_seed(self.seed)
        self.model.seed = self.seed
        self.rec.record_change("seed", None, self.seed, step=self.model.num_timesteps,
                               source="agent:seed")
        return self.model.seed == self.seed

    def _restore(self, stash: dict[str, Any]) -> None:
        m = self.model
        if stash["torch_threads"] != torch.get_num_threads():
            self.rec.record_change("torch_threads", torch.get_num_threads(),
                                   stash["torch_threads"], step=m.num_timesteps,
                                   source="agent:restore")
            torch.set_num_threads(stash["torch_threads"])
        env = cloudpickle.loads(stash["env"]) if stash.get("env") is not None else None
        if env is not None and isinstance(m.env, DummyVecEnv):
            m.env.__dict__.update(env.__dict__)
        for name, value in cloudpickle.loads(stash["model"]).items():
            setattr(m, name, value)
        restore_rng(stash["rng"])

    # ------------------------------------------------------------------ updates
    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buf = getattr(self.model, "rollout_buffer", None)
        obs = getattr(buf, "observations", None)
        self._rollout_hash = None if obs is None else _hash(obs)
        if self.rec.regime == "balanced" and self.rec.watches("amp_nan"):
            self._snapshot = {k: v.detach().clone()
                              for k, v in self.model.policy.state_dict().items()}
            self._opt_snapshot = _clone(self.model.policy.optimizer.state_dict())

    def _on_rollout_start(self) -> None:
        self._after_update()

    def _after_update(self) -> None:
        m = self.model
        if m._n_updates == self._updates:
            return
        self._updates = m._n_updates
        values = getattr(m.logger, "name_to_value", {})
        loss = values.get("train/loss")
        bad = [k for k, v in values.items() if k.startswith("train/")
               and isinstance(v, float) and not math.isfinite(v)]
        weights = [n for n, p in m.policy.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad or weights:
            self.rec.found("amp_nan", event="step", step=m.num_timesteps,
                           evidence={"nonfinite_logged": bad, "nonfinite_weights": weights[:8]},
                           message=f"non-finite values after an update: {bad + weights[:3]}",
                           hint="lower the LR or clip gradients (max_grad_norm)",
                           fix=self._rollback, key=f"u{m._n_updates}")
        if m.lr_schedule is not self._schedule:
            old, new = self._schedule(1.0), m.lr_schedule(1.0)
            self.rec.found("untracked_config_change", event="step", step=m.num_timesteps,
                           evidence={"param": "lr_schedule", "old_at_start": old,
                                     "new_at_start": new},
                           message="the LR schedule was replaced during learn: a change "
                                   "nobody recorded",
                           hint="set learning_rate (a schedule) when building the model",
                           fix=lambda: self._track("lr_schedule", old, new))
            self._schedule = m.lr_schedule
        self.rec.step(m.num_timesteps, loss=loss, lrs=detect.lrs(m.policy.optimizer),
                      params=m.policy, rollout_hash=self._rollout_hash, update=m._n_updates)

    def _rollback(self) -> bool:
        snap = getattr(self, "_snapshot", None)
        if snap is None:
            return False
        self.model.policy.load_state_dict(snap)
        self.model.policy.optimizer.load_state_dict(self._opt_snapshot)
        return all(bool(torch.isfinite(p).all()) for p in self.model.policy.parameters())

    def _track(self, key: str, old: Any, new: Any) -> bool:
        self.rec.record_change(key, old, new, step=self.model.num_timesteps, source="untracked")
        return True

    # ------------------------------------------------------------------ end
    def _on_training_end(self) -> None:
        self._after_update()
        m = self.model
        if self.rec.regime == "balanced":
            setattr(m, _STATE, self._stash())
        else:
            setattr(m, _MARK, {"token": _token(m), "torch_threads": torch.get_num_threads()})
        state = {f"policy.{k}": v.detach().cpu() for k, v in m.policy.state_dict().items()}
        self.result = self.rec.finish(state, num_timesteps=m.num_timesteps)

    def _stash(self) -> dict[str, Any]:
        m = self.model
        env = None
        if isinstance(m.env, DummyVecEnv):
            env = cloudpickle.dumps(m.env)
        return {"token": _token(m), "rng": capture_rng(), "env": env,
                "model": cloudpickle.dumps({k: getattr(m, k) for k in _MODEL_STATE
                                            if hasattr(m, k)}),
                "torch_threads": torch.get_num_threads()}


_LIVE: "weakref.WeakValueDictionary[str, Any]" = weakref.WeakValueDictionary()


def _token(model: Any) -> str:
    """A token for this live model object: a loaded copy (even in this process) has none."""
    token = secrets.token_hex(8)
    _LIVE[token] = model
    return token


def _live(mark: dict[str, Any] | None, model: Any) -> bool:
    """The state was left by this very model object (a continued learn, not a load)."""
    return mark is not None and _LIVE.get(mark.get("token", "")) is model


def _hash(array: Any) -> str:
    from nora.hashing import fingerprint
    return fingerprint(array)[:16]


def _clone(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone(v) for v in obj]
    return obj
