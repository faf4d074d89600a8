"""Readouts of a spiking classifier's ``[T, B, classes]`` output into a loss (``[B, classes]`` is read as T = 1).

* ``ce_mean``: cross-entropy of the time-averaged logits (label smoothing optional).
* ``mse_onehot``: MSE between the time-averaged output and the one-hot target (the SMA event-data recipes).
* ``tet``: TET (Deng et al. 2022), ``mean_t CE(out[t], y)`` plus ``λ·MSE(out, φ=1)`` when ``tet_lambda > 0``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["as_time_first", "readout_loss", "READOUTS"]

READOUTS = ("ce_mean", "mse_onehot", "tet")


def as_time_first(out: torch.Tensor) -> torch.Tensor:
    """``[T, B, K]`` as is; ``[B, K]`` as ``[1, B, K]``."""
    if out.dim() == 2:
        return out.unsqueeze(0)
    if out.dim() != 3:
        raise ValueError(f"a classifier must return [T, B, classes] or [B, classes], got shape {tuple(out.shape)}")
    return out


def readout_loss(out: torch.Tensor, target: torch.Tensor, readout: str = "ce_mean", label_smoothing: float = 0.0,
                 tet_lambda: float = 0.0) -> torch.Tensor:
    """The scalar loss of output ``[T, B, K]`` (or ``[B, K]``) against integer targets ``[B]``."""
    out = as_time_first(out).float()
    if readout == "ce_mean":
        return F.cross_entropy(out.mean(0), target, label_smoothing=label_smoothing)
    if readout == "mse_onehot":
        return F.mse_loss(out.mean(0), F.one_hot(target, out.shape[-1]).to(out.dtype))
    if readout == "tet":
        T = out.shape[0]
        ce = F.cross_entropy(out.flatten(0, 1), target.repeat(T), label_smoothing=label_smoothing)
        if tet_lambda:
            ce = (1 - tet_lambda) * ce + tet_lambda * F.mse_loss(out, torch.ones_like(out))
        return ce
    raise ValueError(f"unknown readout {readout!r}; use one of {READOUTS}")
