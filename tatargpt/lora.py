"""LoRA: fine-tune a frozen model through small low-rank corrections of its linear layers.

A linear layer computes y = x Wᵀ with W of shape (out, in). LoRA keeps W frozen and learns
two small matrices, A (r, in) and B (out, r), so that the layer computes

    y = x Wᵀ + (α / r) · x Aᵀ Bᵀ        i.e. the weight W + (α / r) · B A

B starts at zero, so training starts exactly from the base model. The layer trains
r · (in + out) numbers instead of in · out: for a 128 × 384 attention matrix at rank 8,
4,096 instead of 49,152. After training, `merge` folds (α / r) · B A into W, and the model
is a plain GPT again: the same size, the same speed, loadable by everything in the course.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

# Short names of model.py's linear layers (attention: c_attn, c_proj; MLP: c_fc, c_gate,
# c_proj). "attn" = the attention's two, "mlp" = the MLP's.
TARGETS = {"attn": ("attn.c_attn", "attn.c_proj"),
           "mlp": ("mlp.c_fc", "mlp.c_gate", "mlp.c_proj")}


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update (α / r) · B A."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear initialises

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.t() @ self.lora_b.t()) * self.scale

    def delta(self) -> torch.Tensor:
        """The update to the base weight, (out, in)."""
        return (self.lora_b @ self.lora_a) * self.scale


def target_names(model: nn.Module, targets: list[str]) -> list[str]:
    """The full names of the linear layers that `targets` (attn, mlp) pick in `model`."""
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise ValueError(f"unknown LoRA target(s) {', '.join(unknown) or '(none)'}: "
                         f"choose from {', '.join(TARGETS)}")
    suffixes = tuple(s for t in targets for s in TARGETS[t])
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and name.endswith(suffixes)]


def add_lora(model: nn.Module, rank: int, alpha: float, targets: list[str]) -> list[str]:
    """Freeze every weight of `model` and put a LoRALinear around each targeted layer;
    returns the names of the wrapped layers. Only the adapters train afterwards."""
    if rank < 1:
        raise ValueError(f"the LoRA rank must be at least 1, got {rank}")
    names = target_names(model, targets)
    model.requires_grad_(False)
    for name in names:
        parent, _, child = name.rpartition(".")
        holder = model.get_submodule(parent)
        setattr(holder, child, LoRALinear(getattr(holder, child), rank, alpha))
    return names


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict of the plain model, each LoRA update folded into its base weight
    (W + (α / r) B A) in float32; the model itself is left as it is."""
    state = {}
    for name, tensor in model.state_dict().items():
        if ".lora_" in name:
            continue
        state[name.replace(".base.", ".")] = tensor.detach().clone()
    for name, m in model.named_modules():
        if isinstance(m, LoRALinear):
            key = f"{name}.weight"
            state[key] = (m.base.weight.detach().float() + m.delta().detach().float()).to(
                m.base.weight.dtype)
    return state


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
