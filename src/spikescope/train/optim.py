"""Optimiser and per-epoch learning-rate schedule of a recipe (timm's factories and schedulers)."""
from __future__ import annotations

import torch
from torch import nn

from .config import OptimSection, ScheduleSection

__all__ = ["build_optimizer", "build_scheduler"]

def build_optimizer(model: nn.Module | list[dict], cfg: OptimSection, global_batch: int) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW / NAdam / LAMB with ``cfg``'s hyper-parameters (lr scaled if ``lr_base_batch`` is set).

    ``model`` may instead be a list of parameter groups (a task's ``param_groups``); a group's ``lr_scale`` then
    multiplies the scheduled lr (timm schedulers) and ``no_decay_bias_norm`` does not apply.
    """
    from timm.optim import create_optimizer_v2

    lr = cfg.lr * global_batch / cfg.lr_base_batch if cfg.lr_base_batch else cfg.lr
    kwargs = {}
    if cfg.name == "sgd":  # timm: "sgd" is Nesterov SGD, "momentum" the classic heavy-ball SGD
        opt, kwargs["momentum"] = ("sgd" if cfg.nesterov else "momentum"), cfg.momentum
    else:
        opt = cfg.name
    if cfg.betas is not None:
        kwargs["betas"] = cfg.betas
    if cfg.eps is not None:
        kwargs["eps"] = cfg.eps
    if cfg.momentum_decay is not None:
        if cfg.name != "nadam":
            raise ValueError("optim.momentum_decay: only NAdam has momentum_decay")
        kwargs["momentum_decay"] = cfg.momentum_decay
    return create_optimizer_v2(model, opt=opt, lr=lr, weight_decay=cfg.weight_decay,
                               filter_bias_and_bn=cfg.no_decay_bias_norm, **kwargs)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleSection, epochs: int, iters_per_epoch: int = 1):
    """A timm scheduler stepped with ``scheduler.step(epoch)`` at the start of each epoch; ``None`` for ``none``.

    ``cosine``: half-cosine from the base lr to ``min_lr`` over ``epochs`` (warm-up included);
    ``step``: ×``decay_rate`` every ``decay_epochs``. ``multistep`` / ``poly`` are stepped per update
    (:class:`~spikescope.train.schedules.IterationScheduler`, ``iters_per_epoch`` updates per epoch): linear warm-up
    over ``warmup_iters`` from ``warmup_factor``, then ×``decay_rate`` at each of ``milestones`` (epochs), or a
    poly(``power``) decay to ``min_lr`` at the end of the run.
    """
    from timm.scheduler import CosineLRScheduler, StepLRScheduler

    if cfg.name == "none":
        return None
    if cfg.name in ("multistep", "poly"):
        from .schedules import IterationScheduler

        return IterationScheduler(optimizer, cfg.name, epochs * iters_per_epoch, cfg.warmup_iters, cfg.warmup_factor,
                                  [m * iters_per_epoch for m in cfg.milestones], cfg.decay_rate, cfg.power,
                                  cfg.min_lr)
    if cfg.name == "cosine":
        return CosineLRScheduler(optimizer, t_initial=epochs, lr_min=cfg.min_lr, warmup_t=cfg.warmup_epochs,
                                 warmup_lr_init=cfg.warmup_lr, cycle_limit=1)
    return StepLRScheduler(optimizer, decay_t=cfg.decay_epochs, decay_rate=cfg.decay_rate,
                           warmup_t=cfg.warmup_epochs, warmup_lr_init=cfg.warmup_lr)
