"""BN -> spiking neuron with the BN output and the membrane recomputed in backward instead of kept.

``bn_then_spike(x, bn, neuron)`` equals ``neuron(bn(x))`` for ``x [T, B, C, H, W]``. In training mode with
autograd on, the graph keeps only ``x`` (which BN keeps anyway): the normalised input and the neuron's membrane
trace (4 bytes per element for a smooth surrogate such as ATan) are recomputed from ``x`` and the batch
statistics in backward, one layer at a time. Forward values, running statistics (updated once) and gradients are
those of the plain composition; the modules are called as usual in forward, so their forward hooks still fire.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["bn_then_spike"]


class _BNSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, bn: nn.Module, neuron: nn.Module):
        device = x.device.type
        available = torch.amp.is_autocast_available(device)
        ctx.autocast = (available and torch.is_autocast_enabled(device),
                        torch.get_autocast_dtype(device) if available else None)
        ctx.bn, ctx.neuron = bn, neuron
        ctx.save_for_backward(x, weight, bias)
        return neuron(bn(x))

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias = ctx.saved_tensors
        bn, neuron = ctx.bn, ctx.neuron
        leaves = [t.detach().requires_grad_(need) if t is not None else None
                  for t, need in zip((x, weight, bias), ctx.needs_input_grad[:3])]
        enabled, dtype = ctx.autocast
        recompute = torch.autocast(x.device.type, dtype=dtype) if enabled else contextlib.nullcontext()
        with torch.enable_grad(), recompute:
            y = F.batch_norm(leaves[0].flatten(0, 1), None, None, leaves[1], leaves[2], True, 0.0, bn.eps)
            spikes = neuron.forward(y.unflatten(0, x.shape[:2]))  # .forward: no hooks on the recomputation
        wanted = [t for t, need in zip(leaves, ctx.needs_input_grad[:3]) if need]
        grads = iter(torch.autograd.grad(spikes, wanted, grad))
        return (*[next(grads) if need else None for need in ctx.needs_input_grad[:3]], None, None)


def bn_then_spike(x: torch.Tensor, bn: nn.BatchNorm2d, neuron: nn.Module) -> torch.Tensor:
    """``neuron(bn(x))`` for ``x [T, B, C, H, W]`` (``bn`` a time-folded BatchNorm2d), memory-lean in training."""
    if not (bn.training and torch.is_grad_enabled()) or bn.weight is None:
        return neuron(bn(x))
    return _BNSpike.apply(x, bn.weight, bn.bias, bn, neuron)
