"""Vector envs for PPO: the fastest NEXT_STEP vectorization of an env id, seeded once,
and its full state as plain data so a resumed run continues bit for bit."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from nora.errors import CheckpointError, ConfigError
from nora.seeding import derive_seed


def make_vec_env(env_id: str, num_envs: int, *, seed: int,
                 stream: str) -> tuple[gym.vector.VectorEnv, np.ndarray]:
    """The fastest NEXT_STEP vector env for ``env_id``, reset once with seeds from ``seed``.

    Returns the env and its first observations.
    """
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as e:
        raise ConfigError(f"trainer.env_id: {env_id!r} is not a registered gymnasium env") from e
    env = None
    if spec.vector_entry_point is not None:
        try:
            env = gym.make_vec(env_id, num_envs, vectorization_mode="vector_entry_point")
        except (ImportError, gym.error.Error):  # e.g. a jax-only vector entry point
            env = None
    if env is None:
        env = gym.make_vec(env_id, num_envs, vectorization_mode="sync",
                           disable_env_checker=True)
    if not isinstance(env.single_action_space, gym.spaces.Discrete):
        raise ConfigError(f"trainer.env_id: {env_id!r} has action space "
                          f"{env.single_action_space}; PPO here expects Discrete")
    if env.metadata.get("autoreset_mode") != gym.vector.AutoresetMode.NEXT_STEP:
        raise ConfigError(f"trainer.env_id: {env_id!r} vector env autoresets with "
                          f"{env.metadata.get('autoreset_mode')!r}, expected NEXT_STEP")
    if isinstance(env, gym.vector.SyncVectorEnv):  # one RNG per sub-env
        obs, _ = env.reset(seed=[derive_seed(seed, stream, i) for i in range(num_envs)])
    else:  # a native vector env keeps one RNG for the whole batch
        obs, _ = env.reset(seed=derive_seed(seed, stream))
    env.action_space.seed(derive_seed(seed, stream, "action_space"))
    return env, obs


class _Unsupported(Exception):
    """An attribute that is configuration (a space, spec, callable, dict), not state."""


def _encode(value: Any) -> Any:
    if isinstance(value, np.random.Generator):
        return {"rng": value.bit_generator.state}
    if isinstance(value, (np.ndarray, np.generic)):  # numpy scalars stay numpy (NEP 50)
        try:
            tensor = torch.from_numpy(np.array(value))
        except TypeError:  # object or string arrays
            raise _Unsupported from None
        return {"ndarray" if isinstance(value, np.ndarray) else "scalar": tensor}
    if type(value) in (bool, int, float, str, type(None)):
        return value
    if type(value) in (list, tuple):
        return {type(value).__name__: [_encode(v) for v in value]}
    raise _Unsupported


def _decode(enc: Any, current: Any) -> Any:
    if not isinstance(enc, dict):
        return enc
    (kind, payload), = enc.items()
    if kind == "rng":
        if not (isinstance(current, np.random.Generator)
                and type(current.bit_generator).__name__ == payload["bit_generator"]):
            current = np.random.Generator(getattr(np.random, payload["bit_generator"])())
        current.bit_generator.state = payload
        return current
    if kind == "ndarray":
        return payload.numpy().copy()
    if kind == "scalar":
        return payload.numpy()[()]
    items = [_decode(e, None) for e in payload]
    return tuple(items) if kind == "tuple" else items


def _subenvs(env: Any) -> list[Any]:
    subs = getattr(env, "envs", None)  # SyncVectorEnv
    return subs if isinstance(subs, list) else []


def _layers(env: Any) -> list[Any]:
    layers = [env]
    while isinstance(getattr(layers[-1], "env", None), (gym.Env, gym.vector.VectorEnv)):
        layers.append(layers[-1].env)
    return layers


def capture_env(env: Any) -> dict[str, Any]:
    """Plain-data state of a (vector) env: wrapper chain, sub-envs, RNG bit-generator states."""
    layers = _layers(env)
    state: dict[str, Any] = {"classes": [type(x).__qualname__ for x in layers], "layers": []}
    for layer in layers:
        attrs: dict[str, Any] = {}
        state["layers"].append(attrs)
        for name, value in vars(layer).items():
            try:
                attrs[name] = _encode(value)
            except _Unsupported:
                pass
    state["subenvs"] = [capture_env(e) for e in _subenvs(layers[-1])]
    return state


def restore_env(env: Any, state: dict[str, Any]) -> None:
    """Inverse of ``capture_env`` on an env built from the same id and size."""
    layers = _layers(env)
    classes = [type(x).__qualname__ for x in layers]
    subs = _subenvs(layers[-1])
    if classes != state["classes"] or len(subs) != len(state["subenvs"]):
        raise CheckpointError(f"env state is for {state['classes']} with "
                              f"{len(state['subenvs'])} sub-envs; this env is {classes} "
                              f"with {len(subs)}")
    for layer, attrs in zip(layers, state["layers"]):
        for name, enc in attrs.items():
            setattr(layer, name, _decode(enc, getattr(layer, name, None)))
    for sub, sub_state in zip(subs, state["subenvs"]):
        restore_env(sub, sub_state)
