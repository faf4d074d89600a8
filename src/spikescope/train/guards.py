"""Checks that stop a run instead of letting it produce silent wrong results: non-finite losses, gradients and
weights (:class:`NonFiniteError`, naming the epoch and step)."""
from __future__ import annotations

import torch
import torch.distributed as torch_dist
from torch import nn

from .distributed import DistInfo

__all__ = ["NonFiniteError", "step_is_finite", "raise_non_finite_step", "check_weights_finite"]

_HINT = "lower optim.lr, set optim.clip_grad, or check the data for NaN/inf values"


class NonFiniteError(ValueError):
    """A loss, gradient or weight became NaN or infinite; the message names where and what to try."""


def step_is_finite(loss: torch.Tensor, model: nn.Module, dist: DistInfo) -> bool:
    """Whether the loss and every gradient are finite, on every rank (one scalar all-reduce under DDP)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    ok = torch.isfinite(loss.detach()).all()
    if grads:
        ok = ok & torch.isfinite(torch.nn.utils.get_total_norm(grads))
    flag = ok.to(torch.float32).reshape(1)
    if dist.enabled:
        torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MIN)
    return bool(flag.item())


def raise_non_finite_step(loss: torch.Tensor, epoch: int, step: int) -> None:
    what = f"loss is {loss.item()}" if not torch.isfinite(loss.detach()).all() else "the gradients are not finite"
    raise NonFiniteError(f"epoch {epoch}, step {step}: {what}; the run is stopped before this step changed the "
                         f"weights (last.pt holds the previous epoch); {_HINT}")


def check_weights_finite(model: nn.Module, epoch: int) -> None:
    """Raise :class:`NonFiniteError` naming the first non-finite parameter or buffer of ``model``."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise NonFiniteError(f"epoch {epoch}: {name} holds NaN/inf values after the epoch's last step; "
                                 f"nothing of this epoch was saved (last.pt holds the previous epoch); {_HINT}")
