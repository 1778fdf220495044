"""An exponential moving average of a model's weights (TrainConfig.ema, `--ema DECAY`).

With a large learning rate the weights keep jumping around the bottom of the loss valley;
their average over the last steps sits nearer to it. After every optimizer step

    average ← decay · average + (1 − decay) · weights

so a step's weight in the average fades by `decay` each step (a memory of ~1/(1 − decay)
steps). Early in a run the average would still hold the random initial weights, so the decay
starts low and grows: min(decay, (1 + step) / (10 + step)).

03_train.py trains the weights, and evaluates and saves the average: the checkpoint's "model"
is the average (what every later stage loads), "trained_weights" the weights that training
continues from on --resume.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.model, self.decay = model, decay
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.average = [p.detach().clone() for p in self.params]

    def decay_at(self, step: int) -> float:
        """The decay used after optimizer step `step` (0 for the first)."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold the weights after optimizer step `step` (0 for the first) into the average."""
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params],
                             1.0 - self.decay_at(step))

    @contextmanager
    def swapped_in(self):
        """The model holds the averaged weights inside the block, its own weights after it."""
        with torch.no_grad():
            own = [p.detach().clone() for p in self.params]
            torch._foreach_copy_(self.params, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, own)

    def _slots(self) -> dict[str, int]:
        """State-dict key → index into self.params (tied weights have several keys)."""
        index = {id(p): i for i, p in enumerate(self.params)}
        return {k: index[id(v)] for k, v in self.model.state_dict(keep_vars=True).items()
                if id(v) in index}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The model's state dict with the averaged weights in place of its own."""
        state = self.model.state_dict()
        for key, i in self._slots().items():
            state[key] = self.average[i].detach().clone()
        return state

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Take the average from a state dict written by `state_dict`."""
        for key, i in self._slots().items():
            self.average[i].copy_(state[key])
