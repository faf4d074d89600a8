"""Integer spikes of the dense necks and heads (ST-ERF detection / segmentation code).

The backbone keeps SDT-v3's ``IntegerSpike(4)`` ({0, 1/4, ..., 1}). Every neck and head layer instead emits the
integers ``round(clip(x, 0, 4))`` in {0, ..., 4} (norm 1), with the straight-through gradient of
:class:`~spikescope.neurons.IntegerSpike` (1 on [0, 4], 0 outside; ``round`` is half-to-even).

The released detection FPN (``det/mmdet/models/necks/spike_fpn.py`` of EricZhang1412/Spatial-temporal-ERF) clamps
to [0, 1] in evaluation mode only, so its spikes are {0, ..., 4} in training and {0, 1} at test time: a train/test
mismatch that the reported COCO numbers include. ``eval_max_value=1`` reproduces it; ``None`` is the consistent
variant. The RPN, RoI heads and the segmentation neck/head are consistent ({0, ..., 4} in both modes).
"""
from __future__ import annotations

import torch

from ..neurons import IntegerSpike
from ..neurons.integer import _ClipRoundSTE

__all__ = ["DenseSpike", "Spiked", "fpn_spike", "head_spike", "FPN_EVAL_MAX_RELEASED"]

#: The released detection FPN's evaluation clamp.
FPN_EVAL_MAX_RELEASED = 1


class DenseSpike(IntegerSpike):
    """``x [T, ...]`` -> integers ``round(clip(x, 0, max_value))``; at eval ``clip(x, 0, eval_max_value)`` if set.

    Args:
        max_value: D (4 in every released dense module).
        eval_max_value: the clamp in evaluation mode (``None``: ``max_value``, i.e. the same function as training).
    """

    def __init__(self, max_value: int = 4, eval_max_value: int | None = None, backend: str = "auto") -> None:
        super().__init__(max_value, norm=1.0, backend=backend)
        if eval_max_value is not None and not 1 <= eval_max_value <= max_value:
            raise ValueError(f"DenseSpike: eval_max_value must be in 1..{max_value} or None, got {eval_max_value}")
        self.eval_max_value = eval_max_value

    def forward(self, x: torch.Tensor, return_state: bool = False):
        if self.training or self.eval_max_value is None:
            return super().forward(x, return_state)
        s = _ClipRoundSTE.apply(x, float(self.eval_max_value))
        return (s, x) if return_state else s

    def extra_repr(self) -> str:
        return super().extra_repr() + f", eval_max_value={self.eval_max_value}"


def fpn_spike(released: bool = True) -> DenseSpike:
    """The detection FPN's quantiser: ``released=True`` has the {0, 1} evaluation clamp, ``False`` is consistent."""
    return DenseSpike(4, FPN_EVAL_MAX_RELEASED if released else None)


def head_spike() -> DenseSpike:
    """The quantiser of the RPN, RoI heads and segmentation modules: {0, ..., 4} in training and evaluation."""
    return DenseSpike(4)


class Spiked(torch.nn.Module):
    """``x [T, N, ...]`` -> ``layer(sn(x))`` with ``T`` folded into the batch: a spike, then a conv or linear layer.

    Attribute names ``sn`` / ``layer`` fix the state-dict keys (``<name>.layer.weight``).
    """

    def __init__(self, sn: torch.nn.Module, layer: torch.nn.Module) -> None:
        super().__init__()
        self.sn, self.layer = sn, layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.sn(x)
        return self.layer(s.flatten(0, 1)).unflatten(0, s.shape[:2])
