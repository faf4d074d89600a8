"""Iteration-based learning-rate schedules of the dense recipes (a timm ``Scheduler`` stepped per update).

``lr(i)`` for update ``i`` (0-based), base lr ``b``, warm-up ``W`` updates from factor ``f``::

    warm-up   w(i) = f + (1 - f) * min(i, W) / W                       (1 when W = 0)
    multistep lr(i) = b * w(i) * gamma ** #{m in milestones : m <= i}   (mmdet LinearLR x MultiStepLR, by iteration)
    poly      lr(i) = b * w(i)                                  for i < W
              lr(i) = min + (b - min) * (1 - (i - W) / (N - W)) ** power   (mmseg LinearLR then PolyLR)

``N`` is the run's total number of updates. ``step(epoch)`` is a no-op (``t_in_epochs=False``); the loop calls
``step_update(i)`` before update ``i``. Parameter groups with an ``lr_scale`` get it applied (timm).
"""
from __future__ import annotations

import bisect
from collections.abc import Sequence

import torch
from timm.scheduler.scheduler import Scheduler

__all__ = ["IterationScheduler"]


class IterationScheduler(Scheduler):
    """``kind="multistep"`` (``milestones`` in updates, ``gamma``) or ``"poly"`` (``total``, ``power``, ``min_lr``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, kind: str, total: int, warmup: int = 0,
                 warmup_factor: float = 0.001, milestones: Sequence[int] = (), gamma: float = 0.1,
                 power: float = 1.0, min_lr: float = 0.0) -> None:
        if kind not in ("multistep", "poly"):
            raise ValueError(f"IterationScheduler: unknown kind {kind!r}; use 'multistep' or 'poly'")
        if kind == "poly" and total <= warmup:
            raise ValueError(f"IterationScheduler: poly needs more updates ({total}) than warm-up ({warmup})")
        self.kind, self.total, self.warmup, self.warmup_factor = kind, int(total), int(warmup), float(warmup_factor)
        self.milestones, self.gamma = sorted(int(m) for m in milestones), float(gamma)
        self.power, self.min_lr = float(power), float(min_lr)
        super().__init__(optimizer, param_group_field="lr", t_in_epochs=False)
        self.step_update(0)

    def _warm(self, i: int) -> float:
        if self.warmup == 0:
            return 1.0
        return self.warmup_factor + (1.0 - self.warmup_factor) * min(i, self.warmup) / self.warmup

    def factor(self, i: int) -> float:
        """The multiplier of the base lr at update ``i`` (poly: ignoring ``min_lr``)."""
        if self.kind == "multistep":
            return self._warm(i) * self.gamma ** bisect.bisect_right(self.milestones, i)
        if i < self.warmup:
            return self._warm(i)
        return max(0.0, 1.0 - (i - self.warmup) / (self.total - self.warmup)) ** self.power

    def _get_lr(self, t: int) -> list[float]:
        f = self.factor(t)
        if self.kind == "poly" and t >= self.warmup:
            return [self.min_lr + (b - self.min_lr) * f for b in self.base_values]
        return [b * f for b in self.base_values]
