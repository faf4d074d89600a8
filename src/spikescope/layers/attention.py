"""Spiking self-attention of the LIF-based spiking transformers (Spikformer, SDT-v1, QKFormer).

Every module maps tokens ``[T, B, C, N]`` or token maps ``[T, B, C, H, W]`` to the same layout (the attention
branch, *before* the residual add; the blocks add it). Q, K, V are 1x1 convolutions + BatchNorm + LIF, exactly as in
the authors' code, so their state-dict keys (``q_conv``, ``q_bn``, ..., ``proj_conv``, ``proj_bn``) load unchanged:

=========================== ========================================================================================
:class:`SpikingSelfAttention` Spikformer SSA (ICLR 2023): ``LIF_0.5(Q K^T V * 0.125)`` per head, no softmax, then
                              proj conv + BN + LIF. QKFormer's stage-3 attention is the same module.
:class:`SpikeDrivenSelfAttention` SDT-v1 SDSA (NeurIPS 2023): LIF on the membrane input, ``Q * LIF_0.5(col-sum(K*V))``
                              (Hadamard product, sum over tokens), proj conv + BN, no output LIF (membrane shortcut).
:class:`QKTokenAttention`     QKFormer Q-K token attention (NeurIPS 2024): mask ``LIF_0.5(sum of Q over each
                              head's channels)`` of shape ``[heads, 1, N]`` times K, proj conv + BN + LIF.
:class:`QKChannelAttention`   QKFormer Q-K channel attention: mask ``LIF_0.5(sum of Q over tokens)`` of shape
                              ``[C, 1]`` times K, proj conv + BN + LIF.
=========================== ========================================================================================

Each ``forward`` takes an optional ``taps`` dict; when given, the module stores the output of its ``proj_conv``
under ``"proj_conv"`` (the tensor the ST-ERF code hooks, docs/papers.md#spatial-erf-as-released), in the layout of the input.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..neurons import LIF, PLIF
from ..neurons.surrogate import get_surrogate
from .time import TBatchNorm1d, TBatchNorm2d, TConv1d, TConv2d

__all__ = [
    "LIFSpec",
    "SpikingSelfAttention",
    "SpikeDrivenSelfAttention",
    "QKTokenAttention",
    "QKChannelAttention",
    "conv_bn",
]


@dataclass(frozen=True)
class LIFSpec:
    """The spiking neuron of these models (docs/papers.md#neurons-lif-and-surrogates: SpikingJelly ``MultiStepLIFNode`` defaults).

    Multi-step LIF, tau 2, threshold 1, hard reset to 0, ``detach_reset=True``, Sigmoid surrogate with alpha 4.
    ``parametric=True`` gives PLIF (learnable tau, initialised to ``tau``), SDT-v1's ``spike_mode="plif"``.
    """

    tau: float = 2.0
    v_threshold: float = 1.0
    surrogate: str = "sigmoid"
    alpha: float = 4.0
    backend: str = "auto"
    parametric: bool = False

    def make(self, v_threshold: float | None = None) -> nn.Module:
        """A fresh neuron; ``v_threshold`` overrides the threshold (the attention LIFs use 0.5)."""
        kwargs = dict(
            v_threshold=self.v_threshold if v_threshold is None else v_threshold,
            v_reset=0.0,
            decay_input=True,
            detach_reset=True,
            surrogate=get_surrogate(self.surrogate, self.alpha),
            backend=self.backend,
        )
        return PLIF(init_tau=self.tau, **kwargs) if self.parametric else LIF(tau=self.tau, **kwargs)


def _tokens(x: torch.Tensor, who: str) -> torch.Tensor:
    """``[T,B,C,N]`` or ``[T,B,C,H,W]`` -> ``[T,B,C,N]`` (a view), with a clear error otherwise."""
    if x.dim() == 5:
        return x.flatten(3)
    if x.dim() == 4:
        return x
    raise ValueError(
        f"{who}: expected tokens [T, B, C, N] or token maps [T, B, C, H, W], got shape {tuple(x.shape)}"
    )


def _check_dim(dim: int, num_heads: int, who: str) -> None:
    if dim <= 0 or num_heads <= 0 or dim % num_heads:
        raise ValueError(f"{who}: dim ({dim}) must be a positive multiple of num_heads ({num_heads})")


def conv_bn(c_in: int, c_out: int, bias: bool, conv_dims: int) -> tuple[nn.Module, nn.Module]:
    """A 1x1 convolution and its BatchNorm on time-first tensors; ``conv_dims`` 1 (Conv1d on ``[T,B,C,N]``, as the
    Spikformer/QKFormer attention) or 2 (Conv2d on ``[T,B,C,H,W]``, as SDT-v1). Same parameters either way; only the
    weight shape in the state dict differs (``[C,C,1]`` vs ``[C,C,1,1]``)."""
    if conv_dims == 1:
        return TConv1d(c_in, c_out, 1, bias=bias), TBatchNorm1d(c_out)
    if conv_dims == 2:
        return TConv2d(c_in, c_out, 1, bias=bias), TBatchNorm2d(c_out)
    raise ValueError(f"conv_dims must be 1 or 2, got {conv_dims}")


def _apply(conv: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """Apply a 1x1 conv (or its BN) built by :func:`conv_bn` to tokens ``[T,B,C,N]``."""
    if isinstance(conv, (TConv2d, TBatchNorm2d)):
        return conv(t.unsqueeze(-1)).squeeze(-1)
    return conv(t)


class _QKVBase(nn.Module):
    """Shared plumbing: ``{name}_conv`` (no bias) + ``{name}_bn`` + ``{name}_lif`` for each of ``names``, and the
    output projection ``proj_conv`` (with bias) + ``proj_bn``."""

    def __init__(self, dim: int, names: tuple[str, ...], spike: LIFSpec, conv_dims: int) -> None:
        super().__init__()
        self.dim = dim
        for name in names:
            conv, bn = conv_bn(dim, dim, False, conv_dims)
            self.add_module(f"{name}_conv", conv)
            self.add_module(f"{name}_bn", bn)
            self.add_module(f"{name}_lif", spike.make())
        self.proj_conv, self.proj_bn = conv_bn(dim, dim, True, conv_dims)

    def _spikes(self, name: str, t: torch.Tensor) -> torch.Tensor:
        conv, bn, lif = (getattr(self, f"{name}_{part}") for part in ("conv", "bn", "lif"))
        return lif(_apply(bn, _apply(conv, t)))

    def _project(self, t: torch.Tensor, taps: dict | None, shape: torch.Size) -> torch.Tensor:
        """``proj_conv`` then ``proj_bn`` on tokens; records the conv output in ``taps``; returns ``[T,B,C,N]``."""
        y = _apply(self.proj_conv, t)
        if taps is not None:
            taps["proj_conv"] = y.reshape(shape)
        return _apply(self.proj_bn, y)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        t = _tokens(x, type(self).__name__)
        if t.shape[2] != self.dim:
            raise ValueError(f"{type(self).__name__}: expected {self.dim} channels at dim 2, got shape {tuple(x.shape)}")
        return t


class SpikingSelfAttention(_QKVBase):
    """Spikformer's SSA: ``SSA(X) = LIF(BN(Conv(LIF_0.5(Q K^T V * scale))))``, Q/K/V spike maps, no softmax.

    Per head (``C // num_heads`` channels), ``Q K^T V`` is computed as ``Q (K^T V)`` (same value, linear in N).
    Args: ``dim`` channels, ``num_heads``, ``spike`` neuron settings, ``scale`` 0.125, ``attn_threshold`` 0.5 (the
    ``attn_lif``), ``conv_dims`` 1 as the authors' ImageNet code (Conv1d/BN1d projections).
    Shapes: ``[T,B,C,N]`` or ``[T,B,C,H,W]`` in, the same out.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        spike: LIFSpec = LIFSpec(),
        scale: float = 0.125,
        attn_threshold: float = 0.5,
        conv_dims: int = 1,
    ) -> None:
        _check_dim(dim, num_heads, "SpikingSelfAttention")
        super().__init__(dim, ("q", "k", "v"), spike, conv_dims)
        self.num_heads = num_heads
        self.scale = scale
        self.attn_lif = spike.make(attn_threshold)
        self.proj_lif = spike.make()

    def forward(self, x: torch.Tensor, taps: dict | None = None) -> torch.Tensor:
        t = self._check(x)
        T, B, C, N = t.shape
        h = self.num_heads
        # [T,B,C,N] -> [T,B,h,N,d] (channel c = head * d + j, as the reference's reshape)
        q, k, v = (self._spikes(n, t).reshape(T, B, h, C // h, N).transpose(-1, -2) for n in ("q", "k", "v"))
        y = (q @ (k.transpose(-1, -2) @ v)) * self.scale  # [T,B,h,N,d]
        y = self.attn_lif(y.transpose(-1, -2).reshape(T, B, C, N))
        y = self.proj_lif(self._project(y, taps, x.shape))
        return y.reshape(x.shape)


class SpikeDrivenSelfAttention(_QKVBase):
    """SDT-v1's SDSA, as the attention branch of a membrane-shortcut block (the input is a membrane potential).

    ``S = LIF(X)``; ``Q, K, V = LIF(BN(Conv(S)))``; ``A = LIF_0.5(sum_n K ⊙ V)`` (one value per channel: the column
    sum over tokens); ``Y = BN(Conv(Q ⊙ A))``. No output LIF: the block adds ``Y`` to its membrane input. The
    per-head split of the reference is a pure reshape of this channel-wise computation, so there is no head count.
    ``conv_dims`` 2 as the authors' code (Conv2d/BN2d).
    """

    def __init__(
        self, dim: int, spike: LIFSpec = LIFSpec(), kv_threshold: float = 0.5, conv_dims: int = 2
    ) -> None:
        super().__init__(dim, ("q", "k", "v"), spike, conv_dims)
        self.shortcut_lif = spike.make()
        self.talking_heads_lif = spike.make(kv_threshold)  # the reference's name for the K⊙V-sum neuron

    def forward(self, x: torch.Tensor, taps: dict | None = None) -> torch.Tensor:
        t = self.shortcut_lif(self._check(x))
        q, k, v = (self._spikes(n, t) for n in ("q", "k", "v"))
        kv = self.talking_heads_lif((k * v).sum(dim=-1, keepdim=True))  # [T,B,C,1]
        return self._project(q * kv, taps, x.shape).reshape(x.shape)


class QKTokenAttention(_QKVBase):
    """QKFormer's Q-K token attention (QKTA): a binary token mask per head, applied to K.

    ``A = LIF_0.5(sum of Q over the d = C // num_heads channels of each head)`` -> ``[T,B,heads,1,N]``;
    ``Y = LIF(BN(Conv(A ⊙ K)))``. Linear in N, no V. ``conv_dims`` 1 as the authors' code.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        spike: LIFSpec = LIFSpec(),
        attn_threshold: float = 0.5,
        conv_dims: int = 1,
    ) -> None:
        _check_dim(dim, num_heads, "QKTokenAttention")
        super().__init__(dim, ("q", "k"), spike, conv_dims)
        self.num_heads = num_heads
        self.attn_lif = spike.make(attn_threshold)
        self.proj_lif = spike.make()

    def forward(self, x: torch.Tensor, taps: dict | None = None) -> torch.Tensor:
        t = self._check(x)
        T, B, C, N = t.shape
        h = self.num_heads
        q = self._spikes("q", t).reshape(T, B, h, C // h, N)
        k = self._spikes("k", t).reshape(T, B, h, C // h, N)
        mask = self.attn_lif(q.sum(dim=3, keepdim=True))  # [T,B,h,1,N]
        y = (mask * k).reshape(T, B, C, N)
        return self.proj_lif(self._project(y, taps, x.shape)).reshape(x.shape)


class QKChannelAttention(_QKVBase):
    """QKFormer's Q-K channel attention (QKCA): a binary channel mask applied to K.

    ``A = LIF_0.5(sum of Q over the N tokens)`` -> ``[T,B,C,1]``; ``Y = LIF(BN(Conv(A ⊙ K)))``.
    """

    def __init__(
        self, dim: int, spike: LIFSpec = LIFSpec(), attn_threshold: float = 0.5, conv_dims: int = 1
    ) -> None:
        super().__init__(dim, ("q", "k"), spike, conv_dims)
        self.attn_lif = spike.make(attn_threshold)
        self.proj_lif = spike.make()

    def forward(self, x: torch.Tensor, taps: dict | None = None) -> torch.Tensor:
        t = self._check(x)
        q = self._spikes("q", t)
        k = self._spikes("k", t)
        mask = self.attn_lif(q.sum(dim=-1, keepdim=True))  # [T,B,C,1]
        return self.proj_lif(self._project(mask * k, taps, x.shape)).reshape(x.shape)
