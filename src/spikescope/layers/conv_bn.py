"""Convolution + BatchNorm on time-first tensors, with T folded into the batch once for both layers.

``ConvBN`` maps ``[T, B, C, H, W]`` (``dims=2``) or ``[T, B, C, N]`` (``dims=1``). Its state-dict keys are
``conv.*`` and ``bn.*`` (``bn`` absent with ``norm=False``), i.e. plain ``torch.nn`` keys.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["ConvBN", "NeuronFactory"]

#: Builds one spiking neuron module (``[T, ...]`` in, spikes ``[T, ...]`` out), e.g. ``partial(IntegerSpike, 4)``.
NeuronFactory = Callable[[], nn.Module]


class ConvBN(nn.Module):
    """``Conv{dims}d`` then (optionally) ``BatchNorm{dims}d`` on ``[T, B, C, *spatial]``.

    Args:
        c_in, c_out: channels.
        kernel_size, stride, padding, groups, bias: as ``torch.nn.Conv2d``.
        norm: add the BatchNorm.
        dims: 2 for images ``[T, B, C, H, W]``, 1 for token sequences ``[T, B, C, N]``.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = False,
        norm: bool = True,
        dims: int = 2,
    ) -> None:
        super().__init__()
        conv_cls, bn_cls = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d)
        self.dims = dims
        self.conv = conv_cls(c_in, c_out, kernel_size, stride=stride, padding=padding, groups=groups, bias=bias)
        self.bn = bn_cls(c_out) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.dims + 3:
            raise ValueError(
                f"ConvBN: expected [T, B, C, {'H, W' if self.dims == 2 else 'N'}], got shape {tuple(x.shape)}"
            )
        y = self.conv(x.flatten(0, 1))
        if self.bn is not None:
            y = self.bn(y)
        return y.unflatten(0, x.shape[:2])
