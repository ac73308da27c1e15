"""The evaluation context (eval mode) and the evaluation transform.

``evaluating(model)`` puts the model in eval mode (unless a violation broke the seam, as a
trainer that forgets ``model.eval()`` would) and measures what is really active. ``probe``
runs the eval transform twice on one batch with generators of its own, so looking never
draws from a stream training uses.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
_STOCHASTIC = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


def active_stochastic(model: nn.Module) -> list[str]:
    """Modules that behave differently in train mode and are in train mode now."""
    return sorted({type(m).__name__ for m in model.modules()
                   if isinstance(m, _STOCHASTIC) and m.training
                   and not (isinstance(m, nn.modules.dropout._DropoutNd) and m.p == 0)})


class EvaluationSeam:
    def __init__(self) -> None:
        self.set_eval_mode = True
        self.custom: Transform | None = None  # an eval transform the trainer sets itself
        self.custom_generator: torch.Generator | None = None
        self.leak_training_augment = False  # the seam aug_leak breaks
        self.training_augment: Callable[[], tuple[Transform | None, torch.Generator | None]] = \
            lambda: (None, None)
        self.last: dict[str, Any] = {}
        self.model: nn.Module | None = None
        self.active = False
        self.probe_input: torch.Tensor | None = None

    @property
    def transform(self) -> Transform | None:
        return self.training_augment()[0] if self.leak_training_augment else self.custom

    @property
    def generator(self) -> torch.Generator | None:
        return (self.training_augment()[1] if self.leak_training_augment
                else self.custom_generator)

    @contextlib.contextmanager
    def evaluating(self, model: nn.Module) -> Iterator[dict[str, Any]]:
        """Evaluate inside; the model is back in train mode after."""
        was_training = model.training
        if self.set_eval_mode:
            model.eval()
        self.note(model, None)
        self.active = True
        try:
            with torch.no_grad():
                yield self.last
        finally:
            self.active = False
            model.train(was_training)

    def force_eval_mode(self) -> None:
        """Mend the seam; an evaluation under way continues in eval mode."""
        self.set_eval_mode = True
        if self.active and self.model is not None:
            self.model.eval()

    def note(self, model: nn.Module, x: torch.Tensor | None) -> None:
        """Measure the model as the evaluation will run it (and keep a few inputs to probe)."""
        self.model = model
        if x is not None:
            self.probe_input = x[:8].detach().clone()
        self.last = {"model_training": model.training,
                     "active_stochastic_modules": active_stochastic(model)}

    def repeatable(self) -> bool:
        """Two forward passes over the probe inputs agree and leave the model untouched
        (the measurement a fix is validated by)."""
        model, x = self.model, self.probe_input
        if model is None or x is None:
            return True
        from nora.hashing import fingerprint

        before = fingerprint(model.state_dict())
        with self.evaluating(model):
            a, b = model(self.apply(x)), model(self.apply(x))
        return torch.equal(a, b) and fingerprint(model.state_dict()) == before

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The eval input pipeline: the identity unless an eval transform is set."""
        transform = self.transform
        if transform is None:
            return x
        return transform(x, self.generator)

    def probe(self, x: torch.Tensor) -> dict[str, Any] | None:
        """Evidence that the eval transform is random: two passes over ``x`` with two
        generators of the probe's own differ. None when the pipeline is deterministic."""
        transform = self.transform
        if transform is None:
            return None
        a = transform(x.clone(), torch.Generator().manual_seed(1))
        b = transform(x.clone(), torch.Generator().manual_seed(2))
        if torch.equal(a, b):
            return None
        return {"eval_transform": getattr(transform, "__name__", repr(transform)),
                "max_abs_diff_two_passes": float((a - b).abs().max())}
