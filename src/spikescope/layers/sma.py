"""Spiking Multiscale Attention (SMA) with Attention ZoneOut (AZO), docs/papers.md#sma-module (Shan et al., AAAI 2025).

For every scale n (kernel k_n) a spiking branch S_n = act(BN(Conv_{k_n}(x))) sees the same real-valued input
``x [T, B, C, H, W]``. From the descriptor z = mean_hw(sum_n S_n) ``[T, B, C]`` the module computes

* a channel attention per timestep (``variant="full"``) or pooled over time (``variant="light"``, SMA-L, §3.1):
  alpha^C_n = softmax_n(W_{2,n} ReLU(W_1 z + b_1) + b_{2,n})                 ``[N, T, B, C]`` (light: ``[N, 1, B, C]``)
* a temporal attention per sample from s[b, t] = mean_c z[t, b, c]:
  alpha^T_n = softmax_n(V_{2,n} ReLU(V_1 s + d_1) + d_{2,n})                 ``[N, T, B]``

and returns y = sum_n alpha^T_n alpha^C_n S_n ``[T, B, C, H, W]``.

**Attention ZoneOut** (``azo=True``, training mode only, i.e. driven by ``self.training``): per scale n, the
n_T = T // rtr timesteps of smallest sum_b alpha^T_n and, among the channels, the n_C = C // rcr of smallest
sum_{t in tau_n} sum_b alpha^C_n (SMA-L: smallest sum_b alpha^C_n) are selected; at every selected t > 0 and
selected c the weighted map P_n = alpha^T_n alpha^C_n S_n takes its *un-replaced* value from t - 1 (the tensor
version of the released code). Ties go to the lowest index (stable ascending sort). n_T = 0 or n_C = 0, or only
t = 0 selected, replace nothing. The selection carries no gradient.

Memory: the branch outputs are never stacked (no stack, product or clone copies as in the released code); spiking
branches save them for backward as 1-byte booleans and keep only their BN input besides (``bn_then_spike``
recomputes the normalised input and the membrane in backward). AZO changes only the ``[N, T, B, C]``
coefficients: with mask m and w = alpha^T alpha^C,
y[t] = sum_n (1 - m_n[t]) w_n[t] S_n[t] + sum_n m_n[t] w_n[t-1] S_n[t-1], i.e. one extra weighted sum shifted by
one step (masks and a one-step shift; no loop over timesteps, channels or batch elements).

Parameter and submodule names are the released ones (``S_Convs``, ``C_before_attention_conv``, ...), so the
authors' SMA state dicts load without renaming.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..neurons import LIF, ATan
from .bn_spike import bn_then_spike
from .tdbn import TDBatchNorm
from .time import TBatchNorm2d, TConv2d

__all__ = ["SMA"]

Branch = Literal["lif", "relu"]
Variant = Literal["full", "light"]


class _Branch(nn.Module):
    """One scale: Conv kxk (bias, 'same' padding) -> BN over T*B -> LIF (SMA-VGG) or ReLU (SMA-ResNet).

    The ReLU branch wraps its BN like the released ImageNet code (``bn.bn.*`` keys); the LIF branch is
    SpikingJelly's ``LIFNode(tau=2, v_reset=0, detach_reset=True, ATan)``.
    """

    def __init__(self, channels: int, kernel: int, activation: Branch) -> None:
        super().__init__()
        self.conv = TConv2d(channels, channels, kernel, padding=kernel // 2, bias=True)
        if activation == "lif":
            self.bn = TBatchNorm2d(channels)
            self.act = LIF(tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True, detach_reset=True,
                           surrogate=ATan(2.0))
        else:
            self.bn = TDBatchNorm(channels)
            self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.act, LIF):
            return bn_then_spike(self.conv(x), self.bn, self.act)
        return self.act(self.bn(self.conv(x)))


def _pointwise(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """A kernel-1 conv used as a linear map over its channel axis: ``x [..., in] -> [..., out]``."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


def _pointwise_stack(x: torch.Tensor, convs: nn.ModuleList) -> torch.Tensor:
    """N kernel-1 convs applied to the same ``x [..., in]`` in one matmul -> ``[..., N, out]``."""
    weight = torch.cat([c.weight.flatten(1) for c in convs])
    bias = torch.cat([c.bias for c in convs])
    return F.linear(x, weight, bias).unflatten(-1, (len(convs), -1))


def _lowest(score: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``[..., k]`` of the k smallest entries along the last dim; ties go to the lowest index."""
    return torch.sort(score, dim=-1, stable=True).indices[..., :k]


def _weighted_sum(maps: list[torch.Tensor] | tuple[torch.Tensor, ...], coef: torch.Tensor) -> torch.Tensor:
    """``sum_n coef[n, t, b, c] * maps[n][t, b, c, h, w]`` without stacking ``maps``; coef is ``[N, T, B, C]``."""
    y = coef[0, ..., None, None] * maps[0]
    for n in range(1, len(maps)):
        y = torch.addcmul(y, coef[n, ..., None, None], maps[n])
    return y


class _MultiscaleSum(torch.autograd.Function):
    """y[t] = sum_n keep[n, t] S_n[t] + sum_n moved[n, t-1] S_n[t-1]  (``moved=None``: no shifted term).

    ``keep``/``moved`` are ``[N, T, B, C]`` / ``[N, T-1, B, C]``, the maps ``[T, B, C, H, W]`` each. With
    ``binary=True`` (spiking branches, maps in {0, 1}) the maps are saved for backward as 1-byte booleans, so the
    float maps are freed after the forward; backward forms exactly one gradient per map.
    """

    @staticmethod
    def forward(ctx, keep: torch.Tensor, moved: torch.Tensor | None, binary: bool, *maps: torch.Tensor):
        y = _weighted_sum(maps, keep)
        if moved is not None:
            y[1:] += _weighted_sum([s[:-1] for s in maps], moved)
        ctx.dtypes = [s.dtype for s in maps]
        ctx.save_for_backward(keep, moved, *[s.to(torch.bool) if binary else s for s in maps])
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        keep, moved, *maps = ctx.saved_tensors
        grad_keep = torch.empty_like(keep) if ctx.needs_input_grad[0] else None
        grad_moved = torch.empty_like(moved) if moved is not None and ctx.needs_input_grad[1] else None
        grad_maps = []
        for n, s in enumerate(maps):
            if ctx.needs_input_grad[3 + n]:
                g = grad * keep[n, ..., None, None]
                if moved is not None:
                    g[:-1].addcmul_(grad[1:], moved[n, ..., None, None])
                grad_maps.append(g.to(ctx.dtypes[n]))
            else:
                grad_maps.append(None)
            if grad_keep is not None:
                grad_keep[n] = (grad * s).sum((-2, -1))
            if grad_moved is not None:
                grad_moved[n] = (grad[1:] * s[:-1]).sum((-2, -1))
        return grad_keep, grad_moved, None, *grad_maps


class SMA(nn.Module):
    """Spiking Multiscale Attention: ``[T, B, C, H, W] -> [T, B, C, H, W]`` (real-valued in and out).

    Args:
        channels: C, in and out.
        timesteps: T, fixed at construction (the temporal attention has T input channels); another T at run time
            raises a ``ValueError``.
        kernels: the scales' odd kernel sizes (N = len(kernels)).
        c_reduction: r_c; the channel attention's hidden width is C // r_c.
        t_reduction: r_t (may be fractional: the ImageNet script uses 1.5); hidden width floor(T / r_t).
        azo: Attention ZoneOut in training mode.
        rcr, rtr: AZO ratios, n_C = C // rcr channels and n_T = T // rtr timesteps per scale. (The released
            SMA-L hard-codes rcr=16, rtr=4; pass those to reproduce it.)
        branch: ``"lif"`` (SMA-VGG) or ``"relu"`` (SMA-ResNet, Conv -> TDBN -> ReLU).
        variant: ``"full"`` (channel attention per timestep) or ``"light"`` (SMA-L: pooled over time).
    """

    def __init__(
        self,
        channels: int,
        timesteps: int,
        kernels: tuple[int, ...] = (1, 3, 5, 7),
        c_reduction: float = 16,
        t_reduction: float = 4,
        azo: bool = False,
        rcr: int = 4,
        rtr: int = 4,
        branch: Branch = "lif",
        variant: Variant = "full",
    ) -> None:
        super().__init__()
        if branch not in ("lif", "relu"):
            raise ValueError(f"SMA: branch must be 'lif' or 'relu', got {branch!r}")
        if variant not in ("full", "light"):
            raise ValueError(f"SMA: variant must be 'full' or 'light', got {variant!r}")
        if not kernels or any(int(k) != k or k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError(f"SMA: kernels must be odd positive sizes, got {kernels}")
        for name, value in (("rcr", rcr), ("rtr", rtr)):
            if int(value) != value or value < 1:
                raise ValueError(f"SMA: {name} must be an integer >= 1, got {value}")
        c_hidden = int(channels // c_reduction)
        t_hidden = int(timesteps // t_reduction)
        if c_hidden < 1:
            raise ValueError(f"SMA: channels // c_reduction = {channels} // {c_reduction} < 1; lower c_reduction")
        if t_hidden < 1:
            raise ValueError(f"SMA: timesteps // t_reduction = {timesteps} // {t_reduction} < 1; lower t_reduction")
        self.channels, self.timesteps = int(channels), int(timesteps)
        self.kernels = tuple(int(k) for k in kernels)
        self.c_reduction, self.t_reduction = c_reduction, t_reduction
        self.azo, self.rcr, self.rtr = bool(azo), int(rcr), int(rtr)
        self.branch, self.variant = branch, variant

        self.S_Convs = nn.ModuleList(_Branch(channels, k, branch) for k in self.kernels)
        conv = nn.Conv2d if variant == "full" else nn.Conv3d
        self.C_before_attention_conv = conv(channels, c_hidden, 1)
        self.C_after_attention_convs = nn.ModuleList(conv(c_hidden, channels, 1) for _ in self.kernels)
        self.T_before_attention_conv = nn.Conv3d(timesteps, t_hidden, 1)
        self.T_after_attention_convs = nn.ModuleList(nn.Conv3d(t_hidden, timesteps, 1) for _ in self.kernels)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 5:
            raise ValueError(f"SMA: expected [T, B, C, H, W], got shape {tuple(x.shape)}")
        if x.shape[2] != self.channels:
            raise ValueError(f"SMA: built for C={self.channels} channels, got input of shape {tuple(x.shape)}")
        if x.shape[0] != self.timesteps:
            raise ValueError(
                f"SMA: built for T={self.timesteps} timesteps (its temporal attention has T input channels), got "
                f"T={x.shape[0]} (input shape {tuple(x.shape)}); build the model with timesteps={x.shape[0]} "
                f"or feed {self.timesteps} timesteps"
            )

    def branch_spikes(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The N branch outputs S_n, each ``[T, B, C, H, W]``."""
        self._check_input(x)
        return [b(x) for b in self.S_Convs]

    def attention(self, spikes: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale weights from the branch outputs: alpha^T ``[N, T, B]`` and alpha^C ``[N, T, B, C]``
        (``[N, 1, B, C]`` for ``variant="light"``), each softmaxed over the N scales."""
        z = spikes[0].mean((-2, -1))
        for s in spikes[1:]:
            z = z + s.mean((-2, -1))  # [T, B, C]
        if self.variant == "full":
            a = F.relu(_pointwise(z, self.C_before_attention_conv))
            c = _pointwise_stack(a, self.C_after_attention_convs).permute(2, 0, 1, 3)  # [N, T, B, C]
        else:
            a = F.relu(_pointwise(z.mean(0), self.C_before_attention_conv))
            c = _pointwise_stack(a, self.C_after_attention_convs).permute(1, 0, 2).unsqueeze(1)  # [N, 1, B, C]
        s = z.mean(-1).transpose(0, 1)  # [B, T]
        h = F.relu(_pointwise(s, self.T_before_attention_conv))
        e = _pointwise_stack(h, self.T_after_attention_convs).permute(1, 2, 0)  # [N, T, B]
        return e.softmax(0), c.softmax(0)

    def zoneout_mask(self, alpha_t: torch.Tensor, alpha_c: torch.Tensor) -> torch.Tensor | None:
        """AZO selection ``[N, T, C]`` (True: take the value of t - 1), or ``None`` when n_T or n_C is 0.

        Ranks are computed on detached weights; ties go to the lowest index; t = 0 is never marked.
        """
        N, T, B = alpha_t.shape
        C = alpha_c.shape[-1]
        n_t, n_c = T // self.rtr, C // self.rcr
        if n_t == 0 or n_c == 0:
            return None
        at, ac = alpha_t.detach(), alpha_c.detach()
        idx_t = _lowest(at.sum(2), n_t)  # [N, n_T]
        if self.variant == "full":
            picked = ac.gather(1, idx_t[:, :, None, None].expand(-1, -1, B, C))  # [N, n_T, B, C]
            score_c = picked.sum(1).sum(1)
        else:
            score_c = ac.sum(2)[:, 0]
        idx_c = _lowest(score_c, n_c)  # [N, n_C]
        sel_t = torch.zeros(N, T, dtype=torch.bool, device=at.device).scatter_(1, idx_t, True)
        sel_t[:, 0] = False
        sel_c = torch.zeros(N, C, dtype=torch.bool, device=ac.device).scatter_(1, idx_c, True)
        return sel_t[:, :, None] & sel_c[:, None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes = self.branch_spikes(x)
        alpha_t, alpha_c = self.attention(spikes)
        coef = alpha_t.unsqueeze(-1) * alpha_c  # [N, T, B, C]
        mask = self.zoneout_mask(alpha_t, alpha_c) if self.azo and self.training else None
        if mask is None:
            return _MultiscaleSum.apply(coef, None, self.branch == "lif", *spikes)
        m = mask.unsqueeze(2)  # [N, T, 1, C]
        keep = coef.masked_fill(m, 0.0)
        moved = coef[:, :-1].masked_fill(~m[:, 1:], 0.0)  # weight of S_n[t-1] at the replaced targets t
        return _MultiscaleSum.apply(keep, moved, self.branch == "lif", *spikes)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, timesteps={self.timesteps}, kernels={self.kernels}, "
            f"c_reduction={self.c_reduction}, t_reduction={self.t_reduction}, azo={self.azo}, rcr={self.rcr}, "
            f"rtr={self.rtr}, branch={self.branch!r}, variant={self.variant!r}"
        )
