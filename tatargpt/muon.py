"""Muon for the transformer's weight matrices, AdamW for the rest (03_train.py --optimizer muon).

AdamW scales each weight's step by that weight's own gradient history. Muon treats a weight
matrix as a whole: it keeps a momentum of the gradient and replaces that matrix M = U S Vᵀ
by U Vᵀ — the same directions with every singular value set to one — before the step. No
direction of the update is drowned by a few large ones, so each step changes the matrix in
more directions at once (Jordan et al. 2024, "Muon: an optimizer for hidden layers").

U Vᵀ is never computed by an SVD. A few Newton–Schulz iterations on X = M / ‖M‖ push every
singular value towards one:

    X ← a·X + (b·A + c·A²)·X,   A = X Xᵀ,   (a, b, c) = (3.4445, −4.7750, 2.0315)

(the quintic whose coefficients make five iterations enough; they leave the singular values
between about 0.7 and 1.2, which is close enough). The step is then scaled by
0.2·√max(rows, cols), which gives it about the size of an AdamW step (Liu et al. 2025,
"Muon is scalable for LLM training"): the same learning rate and weight decay serve both.

Only 2-D weights inside the blocks take Muon steps; the embedding (tied with the LM head),
norms and biases stay with AdamW, as in the papers above.
"""

from __future__ import annotations

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
# The step of a matrix is scaled by ADAMW_MATCH·√max(rows, cols): about the size of AdamW's.
# On the quick run, 0.4 (twice the step) scored the same as 0.2 (docs/QUICK_RUN.md).
ADAMW_MATCH = 0.2


def orthogonalize(m: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """About U Vᵀ of m = U S Vᵀ, by `steps` Newton–Schulz iterations (in m's dtype).

    m is one matrix (rows, cols) or a stack of them (n, rows, cols), each orthogonalised on
    its own: a stack takes one batched matmul where single matrices would take n small ones.
    """
    a, b, c = NS_COEFFICIENTS
    x = m / (m.norm(dim=(-2, -1), keepdim=True) + eps)  # every singular value ≤ 1: it converges
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT  # A = X Xᵀ is then the smaller of the two Gram matrices
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if tall else x


class Muon(torch.optim.Optimizer):
    """Nesterov momentum, orthogonalised, with decoupled weight decay; 2-D parameters only."""

    def __init__(self, params, lr: float = 3e-3, momentum: float = 0.95,
                 weight_decay: float = 0.0, ns_steps: int = 5,
                 ns_dtype: torch.dtype = torch.float32):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      ns_steps=ns_steps))
        self.ns_dtype = ns_dtype
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"Muon takes weight matrices only, got shape "
                                     f"{tuple(p.shape)}")

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            mu, lr = group["momentum"], group["lr"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            bufs = []
            for p in params:
                if "momentum" not in self.state[p]:
                    self.state[p]["momentum"] = torch.zeros_like(p)
                bufs.append(self.state[p]["momentum"])
            torch._foreach_mul_(bufs, mu)  # B ← μB + g
            torch._foreach_add_(bufs, grads)
            nesterov = torch._foreach_add(grads, bufs, alpha=mu)  # g + μB
            # Matrices of one shape (a tall one turned on its side) are orthogonalised as
            # one stack: a model's blocks repeat the same few shapes.
            stacks: dict[tuple[int, int], list[int]] = {}
            for i, p in enumerate(params):
                stacks.setdefault((min(p.shape), max(p.shape)), []).append(i)
            for members in stacks.values():
                wide = [nesterov[i].mT if _tall(params[i]) else nesterov[i] for i in members]
                ortho = orthogonalize(torch.stack(wide).to(self.ns_dtype), group["ns_steps"])
                for o, i in zip(ortho, members, strict=True):
                    p = params[i]
                    update = (o.mT if _tall(p) else o).to(p.dtype)
                    p.mul_(1 - lr * group["weight_decay"])
                    p.add_(update, alpha=-lr * ADAMW_MATCH * max(p.shape) ** 0.5)


def _tall(p: torch.Tensor) -> bool:
    return p.size(0) > p.size(1)


class MuonAdamW:
    """Muon for some parameters, AdamW for the others, stepped together as one optimizer.

    `param_groups` lists the groups of both, so the training loop's learning-rate schedule
    reaches every group; the state dict holds both optimizers' states.
    """

    def __init__(self, muon: Muon, adamw: torch.optim.AdamW):
        self.muon, self.adamw = muon, adamw
        self.defaults = adamw.defaults

    @property
    def param_groups(self) -> list[dict]:
        # (read afresh: load_state_dict replaces each optimizer's group dicts)
        return self.muon.param_groups + self.adamw.param_groups

    def step(self) -> None:
        self.muon.step()
        self.adamw.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none=set_to_none)
        self.adamw.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != {"muon", "adamw"}:
            raise ValueError("the saved optimizer state is not Muon + AdamW")
        self.muon.load_state_dict(state["muon"])
        self.adamw.load_state_dict(state["adamw"])
